package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	kmspb "cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/hsmtest"
	"github.com/tier0-ca/tier0/internal/server/keys"
	"github.com/tier0-ca/tier0/signer/kmsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
	"github.com/tier0-ca/tier0/signer/soft"
)

const webID = "spiffe://example.org/web"

// keyBackend is a CA root key for a server under test, with the fault
// knobs of the KMS fakes (nil for soft and pkcs11).
type keyBackend struct {
	uri    string
	faults *kmsfake.Faults
}

func softBackend(t *testing.T) keyBackend {
	path := filepath.Join(t.TempDir(), "root.key")
	if err := soft.Generate(path); err != nil {
		t.Fatal(err)
	}
	return keyBackend{uri: "soft:" + path}
}

func awsBackend(t *testing.T) keyBackend {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTIER0TEST") // inherited by the server process
	t.Setenv("AWS_SECRET_ACCESS_KEY", "tier0-test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	fake := awsfake.New()
	lis := listenT(t)
	go func() { _ = fake.Serve(lis) }()
	arn, err := fake.CreateKey("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	return keyBackend{uri: fmt.Sprintf("awskms:///%s?region=us-east-1&endpoint=http://%s", arn, lis.Addr()), faults: &fake.Faults}
}

func gcpBackend(t *testing.T) keyBackend {
	fake := gcpfake.New()
	lis := listenT(t)
	go func() { _ = fake.Serve(lis) }()
	t.Cleanup(fake.Stop)
	name, err := fake.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/ca", kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return keyBackend{uri: fmt.Sprintf("gcpkms:%s?endpoint=%s&insecure=1", name, lis.Addr()), faults: &fake.Faults}
}

// startKeyServer starts a server for a key custody test.
func startKeyServer(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	return startServer(t, dataDir, args...)
}

func listenT(t *testing.T) net.Listener {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return lis
}

// mintWeb mints one SVID for webID and checks it with go-spiffe against the
// bundle the server serves (DATA/bundle.pem), plus what x509svid.Verify
// does not check. It returns the verified chain or the mint error.
func mintWeb(t *testing.T, srv *proc, c *client.Client) ([]*x509.Certificate, error) {
	t.Helper()
	csr, key, err := client.NewCSR(spiffeid.RequireFromString(webID))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr}}})
	if err != nil {
		return nil, err
	}
	res := resp.GetResults()[0]
	if e := res.GetError(); e != nil {
		return nil, fmt.Errorf("mint: code %d: %s", e.GetCode(), e.GetMessage())
	}
	svid, err := x509svid.ParseRaw(concatDER(res.GetChain()), mustMarshalKey(t, key))
	if err != nil {
		t.Fatalf("parse minted svid: %v", err)
	}
	checkSVID(t, svid.Certificates, srv.bundle())
	return svid.Certificates, nil
}

func checkSVID(t *testing.T, chain []*x509.Certificate, bundle *x509bundle.Bundle) {
	t.Helper()
	id, _, err := x509svid.Verify(chain, bundle)
	if err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}
	leaf := chain[0]
	if id.String() != webID || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
		t.Fatalf("bad svid profile: id %s ku %v ca %v", id, leaf.KeyUsage, leaf.IsCA)
	}
	if len(chain) > 1 && leaf.NotAfter.After(chain[1].NotAfter) {
		t.Fatalf("svid NotAfter %v outlives its issuer's %v", leaf.NotAfter, chain[1].NotAfter)
	}
}

func concatDER(chain [][]byte) []byte {
	var out []byte
	for _, c := range chain {
		out = append(out, c...)
	}
	return out
}

func mustMarshalKey(t *testing.T, key any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestKeyCustodyBackends: a CA node with each backend in each mode issues
// SVIDs that go-spiffe verifies against the served bundle; direct chains
// are the leaf alone (the HSM/KMS key is the root), delegated ones carry
// the intermediate the root key signed.
func TestKeyCustodyBackends(t *testing.T) {
	backends := map[string]func(*testing.T) keyBackend{
		"soft":   softBackend,
		"pkcs11": func(t *testing.T) keyBackend { return keyBackend{uri: hsmtest.ECKeyURI(t)} },
		"awskms": awsBackend,
		"gcpkms": gcpBackend,
	}
	for _, name := range []string{"soft", "pkcs11", "awskms", "gcpkms"} {
		for _, mode := range []string{keys.Direct, keys.Delegated} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				kb := backends[name](t)
				srv := startKeyServer(t, t.TempDir(), "--signer", kb.uri, "--signing-mode", mode)
				c := agentClient(t, srv, "host-1", webID)
				chain, err := mintWeb(t, srv, c)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]int{keys.Direct: 1, keys.Delegated: 2}[mode]; len(chain) != want {
					t.Fatalf("chain of %d certificates, want %d in %s mode", len(chain), want, mode)
				}
				list := must(srv.cli("ca", "list"))
				if !strings.Contains(list, " active ") {
					t.Fatalf("ca list does not show the %s key active:\n%s", name, list)
				}
			})
		}
	}
}

// TestCARootRotation: `tier0 ca prepare` publishes a new root in the
// bundle without using it; `tier0 ca activate` switches issuance (here from
// the dev soft root to a delegated AWS KMS root, by the URI's default
// mode) once the node reports it can sign with the new key and the
// publish window has passed (--ca-publish-window, short here); the old
// root stays in the bundle, published-old.
func TestCARootRotation(t *testing.T) {
	kms := awsBackend(t)
	data := t.TempDir()
	srv := startKeyServer(t, data, "--ca-publish-window", "3s")
	c := agentClient(t, srv, "host-1", webID)
	chainA := must(mintWeb(t, srv, c))
	// The root that signed a chain: the AKI of its last certificate (the
	// leaf in direct mode, the intermediate in delegated mode).
	rootOf := func(chain []*x509.Certificate) string { return string(chain[len(chain)-1].AuthorityKeyId) }
	akiA := rootOf(chainA)

	id := strings.TrimSpace(must(srv.cli("ca", "prepare", "--signer", kms.uri)))
	// DATA/bundle.pem follows the replicated bundle within a reconcile.
	pollUntil(t, 10*time.Second, func() bool { return len(srv.bundle().X509Authorities()) == 2 })
	if chain := must(mintWeb(t, srv, c)); rootOf(chain) != akiA {
		t.Fatal("a prepared root signed something before activation")
	}
	if _, err := srv.cli("ca", "activate", "nope"); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Fatalf("activate unknown root: %v", err)
	}
	if _, err := srv.cli("ca", "activate", id); err == nil || !strings.Contains(err.Error(), "FailedPrecondition") || !strings.Contains(err.Error(), "publish window 3s") {
		t.Fatalf("activate right after prepare: %v", err)
	}
	pollUntil(t, 20*time.Second, func() bool { _, err := srv.cli("ca", "activate", id); return err == nil })
	var chainB []*x509.Certificate
	pollUntil(t, 20*time.Second, func() bool {
		chainB = must(mintWeb(t, srv, c))
		return rootOf(chainB) != akiA
	})
	if len(chainB) != 2 {
		t.Fatalf("after activating the KMS root: chain of %d, want leaf + delegated intermediate", len(chainB))
	}
	var list string
	pollUntil(t, 10*time.Second, func() bool {
		list = must(srv.cli("ca", "list", "-o", "json"))
		return strings.Contains(list, `"state": "published-old"`)
	})
	if !strings.Contains(list, id) || !strings.Contains(list, `"signing_mode": "delegated"`) || strings.Contains(list, `"state": "retired"`) {
		t.Fatalf("ca list after activation:\n%s", list)
	}
	// An SVID from the old root still verifies: the old root stays.
	checkSVID(t, chainA, srv.bundle())
}

// TestKMSFaultsDuringIssuance: direct mode on a KMS. While the KMS is down
// or returns bad signatures, mints fail (clearly, counted) and never return
// an SVID that does not verify; once the fault clears the node issues again.
func TestKMSFaultsDuringIssuance(t *testing.T) {
	for _, name := range []string{"awskms", "gcpkms"} {
		t.Run(name, func(t *testing.T) {
			kb := map[string]func(*testing.T) keyBackend{"awskms": awsBackend, "gcpkms": gcpBackend}[name](t)
			srv := startKeyServer(t, t.TempDir(), "--signer", kb.uri, "--signing-mode", "direct", "--signer-timeout", "2s")
			c := agentClient(t, srv, "host-1", webID)
			must(mintWeb(t, srv, c))

			kb.faults.CorruptSignature(true)
			if _, err := mintWeb(t, srv, c); err == nil {
				t.Fatal("mint succeeded with a corrupting KMS")
			}
			if m := metric(t, srv, "tier0_ca_bad_signatures_total"); !strings.Contains(m, `backend="`+name+`"`) {
				t.Fatalf("bad signature not counted:\n%s", m)
			}
			if !strings.Contains(srv.log.String(), "returned a signature that does not verify") {
				t.Fatal("server log lacks a clear bad-signature error")
			}
			kb.faults.Reset()

			kb.faults.Unavailable(true)
			for range 3 { // fail fast, then through the open circuit
				start := time.Now()
				_, err := mintWeb(t, srv, c)
				if err == nil {
					t.Fatal("mint succeeded with the KMS down")
				}
				// A dead KMS is retryable, not our bug: Unavailable (14), not
				// Internal; the whole call when every item failed so.
				if status.Code(err) != codes.Unavailable && !strings.Contains(err.Error(), fmt.Sprintf("code %d:", codes.Unavailable)) {
					t.Fatalf("KMS down: %v, want code Unavailable", err)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("mint with the KMS down took %v, want within the signer timeout", d)
				}
			}
			kb.faults.Reset()
			pollUntil(t, 40*time.Second, func() bool { _, err := mintWeb(t, srv, c); return err == nil })
		})
	}
}

// TestDelegatedRotationShortLifetimes: 12 s intermediates (a hidden test
// flag) rotate while an agent keeps renewing and minting; every SVID
// verifies and ends no later than its intermediate; a KMS outage shorter
// than the preparation window does not interrupt issuance.
func TestDelegatedRotationShortLifetimes(t *testing.T) {
	kb := awsBackend(t)
	srv := startKeyServer(t, t.TempDir(), "--signer", kb.uri, "--signing-mode", "delegated",
		"--intermediate-ttl", "12s", "--allow-short-intermediate")
	c := agentClient(t, srv, "host-1", webID)
	seen := map[string]bool{}
	deadline := time.Now().Add(90 * time.Second)
	outage := false
	pace := time.NewTicker(300 * time.Millisecond) // renew/mint rate, not synchronisation
	defer pace.Stop()
	for ; len(seen) < 4; <-pace.C {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d intermediates in 90s, want 4", len(seen))
		}
		c = renewAgent(t, srv, c)
		chain, err := mintWeb(t, srv, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(chain) != 2 {
			t.Fatalf("chain of %d, want 2", len(chain))
		}
		seen[chain[1].SerialNumber.String()] = true
		if len(seen) == 2 && !outage { // KMS down for a moment: issuance goes on
			outage = true
			kb.faults.Unavailable(true)
			must(mintWeb(t, srv, c))
			kb.faults.Unavailable(false)
		}
	}
}

// renewAgent renews the agent SVID (capped by tiny intermediates) and
// returns a client using it.
func renewAgent(t *testing.T, srv *proc, c *client.Client) *client.Client {
	t.Helper()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := c.Agent().RenewAgent(ctx, &tier0v1.RenewAgentRequest{Csr: csr})
	if err != nil {
		t.Fatalf("renew agent: %v", err)
	}
	svid, err := client.ParseChain(resp.GetChain(), key, srv.bundle())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	nc, err := client.New(ctx, client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), SVID: client.NewRotatingSVID(svid), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func metric(t *testing.T, srv *proc, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + srv.info.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, name) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
