package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// secrets unpacks a DiscoveryResponse into its secrets by name.
func secrets(t *testing.T, resp *discoveryv3.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	out := map[string]*tlsv3.Secret{}
	for _, r := range resp.GetResources() {
		var s tlsv3.Secret
		if r.GetTypeUrl() != secretType {
			t.Fatalf("resource of type %s", r.GetTypeUrl())
		}
		if err := r.UnmarshalTo(&s); err != nil {
			t.Fatal(err)
		}
		out[s.GetName()] = &s
	}
	return out
}

// leafOf parses a tls_certificate secret and verifies it against bundle.
func leafOf(t *testing.T, srv *proc, s *tlsv3.Secret, want spiffeid.ID) *x509.Certificate {
	t.Helper()
	tc := s.GetTlsCertificate()
	svid, err := x509svid.Parse(tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes())
	if err != nil {
		t.Fatalf("secret %s: %v", s.GetName(), err)
	}
	if _, _, err := x509svid.Verify(svid.Certificates, srv.bundle()); err != nil || svid.ID != want {
		t.Fatalf("secret %s holds %s (%v), want %s", s.GetName(), svid.ID, err, want)
	}
	return svid.Certificates[0]
}

// TestEnvoySDS: go-control-plane's SDS client on the agent's Workload API
// socket (no security header, as Envoy sends none). The stream gets the
// caller's SVID and bundle, a push with a new version and nonce after each
// rotation, survives a NACK without a resend loop, ignores a stale nonce,
// follows a change of subscription; other workloads' SVIDs are refused;
// FetchSecrets answers once; DeltaSecrets is Unimplemented.
func TestEnvoySDS(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, t.TempDir())
	uid := fmt.Sprint(os.Getuid())
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	must(srv.cli("entry", "create", "--agent", "host-1", "--ttl", "15m", "--spiffe-id", web.String(), "--selector", "unix:uid:"+uid))
	must(srv.cli("entry", "create", "--agent", "host-1", "--ttl", "15m", "--spiffe-id", "spiffe://example.org/other", "--selector", "unix:uid:"+fmt.Sprint(os.Getuid()+1)))
	agent := startAgent(t, srv, "host-1", "--sync-interval", "200ms", "--renew-fraction", "0.002")

	conn, err := grpc.NewClient("unix://"+agent.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	sds := secretv3.NewSecretDiscoveryServiceClient(conn)
	node := &corev3.Node{Id: "sidecar~10.0.0.1~web~default", Cluster: "web"}

	stream, err := sds.StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{web.String(), "ROOTCA"}
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: secretType, ResourceNames: names}); err != nil {
		t.Fatal(err)
	}
	first := must(stream.Recv())
	got := secrets(t, first)
	if first.GetVersionInfo() == "" || first.GetNonce() == "" || len(got) != 2 || first.GetTypeUrl() != secretType {
		t.Fatalf("initial response: version %q nonce %q %d secrets", first.GetVersionInfo(), first.GetNonce(), len(got))
	}
	leaf1 := leafOf(t, srv, got[web.String()], web)
	ca := got["ROOTCA"].GetValidationContext().GetTrustedCa().GetInlineBytes()
	if block, _ := pem.Decode(ca); block == nil || !srv.bundle().HasX509Authority(must(x509.ParseCertificate(block.Bytes))) {
		t.Fatalf("ROOTCA is not the trust bundle: %q", ca)
	}

	// The agent pushes on every rotation (about every 2 s here), so a push
	// can race with any request below: responses are read on a channel and
	// each step re-sends its request against the newest nonce when one does.
	resps := make(chan *discoveryv3.DiscoveryResponse, 64)
	go func() {
		defer close(resps)
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			resps <- r
		}
	}()
	next := func() *discoveryv3.DiscoveryResponse {
		t.Helper()
		select {
		case r, ok := <-resps:
			if !ok {
				t.Fatal("SDS stream ended")
			}
			return r
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		return nil
	}
	send := func(req *discoveryv3.DiscoveryRequest) {
		t.Helper()
		req.Node, req.TypeUrl = node, secretType
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
	}

	// ACK; the next response is a push after the SVID rotated.
	send(&discoveryv3.DiscoveryRequest{ResourceNames: names, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()})
	second := next()
	leaf2 := leafOf(t, srv, secrets(t, second)[web.String()], web)
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || second.GetVersionInfo() == first.GetVersionInfo() || second.GetNonce() == first.GetNonce() {
		t.Fatalf("push: serial %v (was %v), version %s (was %s)", leaf2.SerialNumber, leaf1.SerialNumber, second.GetVersionInfo(), first.GetVersionInfo())
	}

	// NACK the newest response: the agent keeps the previous version, logs
	// the rejection and does not answer it with a resend. A NACK that a
	// push overtook carries a stale nonce and is ignored, so it is sent
	// again against the push.
	latest := second
	nack := func() {
		send(&discoveryv3.DiscoveryRequest{ResourceNames: names, VersionInfo: first.GetVersionInfo(), ResponseNonce: latest.GetNonce(),
			ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "test: rejected secret"}})
	}
	nack()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(agent.log.String(), "test: rejected secret") {
		if time.Now().After(deadline) {
			t.Fatal("the NACK was not logged within 30s")
		}
		select {
		case r, ok := <-resps:
			if !ok {
				t.Fatal("SDS stream ended")
			}
			latest = r
			nack()
		case <-time.After(20 * time.Millisecond):
		}
	}
	leafLatest := leafOf(t, srv, secrets(t, latest)[web.String()], web)
	// A request with a stale nonce (the first response's) is ignored: its
	// new subscription does not take effect.
	send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}, ResponseNonce: first.GetNonce()})
	third := next() // the next rotation
	if s := secrets(t, third); len(s) != 2 || s[web.String()] == nil || leafOf(t, srv, s[web.String()], web).SerialNumber.Cmp(leafLatest.SerialNumber) == 0 {
		t.Fatalf("after NACK and a stale request: %d secrets, want the rotated %s and ROOTCA", len(s), web)
	}
	// With the current nonce, a new subscription is answered at once (if a
	// push overtakes the request, it is sent again against the push).
	want := []string{"default", "ALL"}
	cur := third
	var fourth map[string]*tlsv3.Secret
	for fourth == nil {
		send(&discoveryv3.DiscoveryRequest{ResourceNames: want, VersionInfo: cur.GetVersionInfo(), ResponseNonce: cur.GetNonce()})
		cur = next()
		if s := secrets(t, cur); s["default"] != nil {
			fourth = s
		}
	}
	if len(fourth) != 2 || fourth["ALL"].GetValidationContext().GetCustomValidatorConfig().GetName() != "envoy.tls.cert_validator.spiffe" {
		t.Fatalf("default+ALL: %v", fourth)
	}
	leafOf(t, srv, fourth["default"], web)
	var spiffeCfg tlsv3.SPIFFECertValidatorConfig
	if err := fourth["ALL"].GetValidationContext().GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(&spiffeCfg); err != nil ||
		len(spiffeCfg.GetTrustDomains()) != 1 || spiffeCfg.GetTrustDomains()[0].GetName() != "example.org" {
		t.Fatalf("ALL: %v %v", spiffeCfg.GetTrustDomains(), err)
	}

	// Another workload's SVID and an unknown name are refused.
	for _, name := range []string{"spiffe://example.org/other", "spiffe://example.org/nobody", "spiffe://partner.example"} {
		denied, err := sds.StreamSecrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_ = denied.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: secretType, ResourceNames: []string{web.String(), name}})
		if _, err := denied.Recv(); grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), name) {
			t.Fatalf("%s: %v, want PermissionDenied naming it", name, err)
		}
	}
	one, err := sds.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: node, ResourceNames: []string{web.String()}})
	if err != nil || len(one.GetResources()) != 1 || one.GetNonce() != "" {
		t.Fatalf("FetchSecrets: %v, %v", one, err)
	}
	leafOf(t, srv, secrets(t, one)[web.String()], web)
	if _, err := sds.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); grpcstatus.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong type: %v", err)
	}
	delta, err := sds.DeltaSecrets(ctx)
	if err == nil {
		_, err = delta.Recv()
	}
	if grpcstatus.Code(err) != codes.Unimplemented {
		t.Fatalf("DeltaSecrets: %v", err)
	}
	if slices.Contains([]string{first.GetVersionInfo(), second.GetVersionInfo()}, third.GetVersionInfo()) {
		t.Fatal("versions repeat")
	}
}
