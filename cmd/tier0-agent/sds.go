package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// sdsServer is Envoy's Secret Discovery Service (v3) on the Workload API
// socket, as the SPIRE agent serves it: the caller is attested exactly as
// for the Workload API and gets only its own SVIDs and the bundles its
// entries allow. Resource names: a SPIFFE ID (one of the caller's SVIDs as
// a tls_certificate), a trust domain ID spiffe://TD (a validation_context
// with that bundle), and the names in sdsNames.
type sdsServer struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	w     *workloadAPI
	names sdsNames
}

func (s *sdsServer) set(v view) secretSet {
	return secretSet{names: s.names, td: s.w.a.td.IDString(), roots: s.w.a.bundle.X509Authorities(), federated: s.w.a.federatedX509(v.federates), v: v}
}

// FetchSecrets answers once with the requested secrets available now.
func (s *sdsServer) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	p, err := s.w.attest(ctx, "FetchSecrets")
	if err != nil {
		return nil, err
	}
	if err := checkType(req.GetTypeUrl()); err != nil {
		return nil, err
	}
	v, matched, _ := s.w.c.snapshot(p.workload)
	if !matched {
		return nil, status.Error(codes.PermissionDenied, "no identity issued")
	}
	r, err := s.set(v).resolve(req.GetResourceNames())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := s.deny(ctx, p, r.denied); err != nil {
		return nil, err
	}
	if len(r.resources) == 0 {
		return nil, status.Errorf(codes.Unavailable, "%s not issued yet", strings.Join(r.pending, ", "))
	}
	return &discoveryv3.DiscoveryResponse{TypeUrl: secretTypeURL, Resources: r.resources}, nil
}

func (s *sdsServer) deny(ctx context.Context, p peerInfo, denied []string) error {
	if len(denied) == 0 {
		return nil
	}
	s.w.e.logger().WarnContext(ctx, "sds: workload denied secrets", "names", denied, "pid", p.pid, "uid", p.workload.UID)
	return status.Errorf(codes.PermissionDenied, "workload is not entitled to %s", strings.Join(denied, ", "))
}

func checkType(url string) error {
	if url != "" && url != secretTypeURL {
		return status.Errorf(codes.InvalidArgument, "type %q: this server serves only %s", url, secretTypeURL)
	}
	return nil
}

// StreamSecrets serves the xDS state-of-the-world protocol for secrets:
// every request that changes the subscribed names, and every change of the
// caller's SVIDs or bundles (a rotation), gets a response with a new
// version and nonce. A request carrying the last nonce is an ACK (its
// version_info is ours) or a NACK (error_detail set; logged, and the
// rejected secrets are not sent again until they change); a request with
// an older nonce is stale and ignored (xDS: the client will see the newer
// response).
func (s *sdsServer) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	ctx := stream.Context()
	p, err := s.w.attest(ctx, "StreamSecrets")
	if err != nil {
		return err
	}
	log := s.w.e.logger().With("pid", p.pid, "uid", p.workload.UID)
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		names     []string // subscribed; nil until the first request
		requested bool
		version   int
		nonce     string
		last      *discoveryv3.DiscoveryResponse // resources of the last response sent
	)
	for {
		v, matched, changed := s.w.c.snapshot(p.workload)
		if !matched {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if requested {
			r, err := s.set(v).resolve(names)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := s.deny(ctx, p, r.denied); err != nil {
				return err
			}
			resp := &discoveryv3.DiscoveryResponse{TypeUrl: secretTypeURL, Resources: r.resources}
			// While the cache still mints a requested SVID for the first
			// time, wait for it rather than send a partial set.
			complete := len(r.pending) == 0 || v.pending == 0
			if complete && len(r.resources) > 0 && (last == nil || !proto.Equal(resp, last)) {
				version++
				if nonce, err = newNonce(); err != nil {
					return status.Error(codes.Internal, err.Error())
				}
				out := proto.CloneOf(resp)
				out.VersionInfo, out.Nonce = strconv.Itoa(version), nonce
				if err := stream.Send(out); err != nil {
					return err
				}
				last = resp
				log.DebugContext(ctx, "sds: sent secrets", "version", version, "names", names, "count", len(resp.Resources))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case <-changed:
		case req := <-reqs:
			if err := checkType(req.GetTypeUrl()); err != nil {
				return err
			}
			if requested && req.GetResponseNonce() != nonce {
				log.DebugContext(ctx, "sds: ignoring a request with a stale nonce", "nonce", req.GetResponseNonce())
				continue
			}
			if d := req.GetErrorDetail(); d != nil {
				log.WarnContext(ctx, "sds: Envoy rejected secrets (NACK)", "version", version, "names", names, "err", d.GetMessage())
			}
			if !requested || !sameNames(names, req.GetResourceNames()) {
				names, requested, last = slices.Clone(req.GetResourceNames()), true, nil
			}
		}
	}
}

// sameNames compares subscriptions as sets.
func sameNames(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(slices.Compact(x), slices.Compact(y))
}

func newNonce() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// DeltaSecrets: the incremental protocol is not served (as SPIRE).
func (s *sdsServer) DeltaSecrets(secretv3.SecretDiscoveryService_DeltaSecretsServer) error {
	return status.Error(codes.Unimplemented, "DeltaSecrets is not implemented: use StreamSecrets")
}
