package api

import (
	"context"
	"crypto"
	"encoding/base64"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/nodeattest"
	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/storage"
)

type recorded struct {
	caller, requested string
	allowed           bool
	reason, code      string
}

type recorderFunc func(ctx context.Context, a ha.Attestation) error

func (f recorderFunc) RecordAttestation(ctx context.Context, a ha.Attestation) error {
	return f(ctx, a)
}

type decisionsFake struct{ rows chan recorded }

func (d decisionsFake) Decide(r storage.Decision) {
	d.rows <- recorded{r.Caller, r.Requested, r.Allowed, r.Reason, r.Code}
}

// TestAttestAgentStatuses: a disabled attestor and an agent that cannot
// answer x509pop's challenge are PermissionDenied, garbage evidence is
// InvalidArgument, each with a decision row; a good x509pop attestation
// issues the agent SVID and records its selectors.
func TestAttestAgentStatuses(t *testing.T) {
	dir := t.TempDir()
	hostCA := attesttest.NewCA(t, "hosts")
	bundlePath := dir + "/hosts.pem"
	writeTestFile(t, bundlePath, hostCA.PEM())
	reg, err := nodeattest.New(nodeattest.Config{TrustDomain: testTD, Sections: map[string]string{nodeattest.X509PoP: "ca_bundle: " + bundlePath + "\n"}})
	if err != nil {
		t.Fatal(err)
	}
	dec := decisionsFake{rows: make(chan recorded, 10)}
	var node AttestationRecorder
	f := newFixture(t, func(c *Config) {
		c.NodeAttestors, c.Decisions = reg, dec
		c.Attestations = recorderFunc(func(ctx context.Context, a ha.Attestation) error { return node.RecordAttestation(ctx, a) })
	})
	node = f.node
	ctx := context.Background()
	cert, key := hostCA.Host(t, "web-1", nil, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	ev := []byte(`{"chain":["` + b64(cert.Raw) + `"]}`)
	sign := func(k crypto.Signer) client.ChallengeResponder {
		return func(n []byte) ([]byte, error) { return nodeattest.SignChallenge(k, testTD.Name(), n) }
	}
	cases := []struct {
		name, attestor string
		evidence       []byte
		respond        client.ChallengeResponder
		code           codes.Code
	}{
		{"disabled attestor", nodeattest.AWSIID, []byte(`{}`), nil, codes.PermissionDenied},
		{"unknown attestor", "tpm", []byte(`{}`), nil, codes.PermissionDenied},
		{"garbage evidence", nodeattest.X509PoP, []byte(`{"chain":`), nil, codes.InvalidArgument},
		{"no answer to the challenge", nodeattest.X509PoP, ev, func([]byte) ([]byte, error) { return []byte{1}, nil }, codes.PermissionDenied},
	}
	for _, c := range cases {
		_, _, err := client.AttestAgent(ctx, []string{f.addr}, testTD, f.bundle, c.attestor, c.evidence, c.respond)
		if status.Code(err) != c.code {
			t.Fatalf("%s: err = %v, want %v", c.name, err, c.code)
		}
		if r := <-dec.rows; r.allowed || r.caller[:9] != "attestor:" {
			t.Fatalf("%s: decision %+v", c.name, r)
		}
	}
	svid, sels, err := client.AttestAgent(ctx, []string{f.addr}, testTD, f.bundle, nodeattest.X509PoP, ev, sign(key))
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := roles.AgentName(testTD, svid.ID); !ok || name[:8] != "x509pop." || len(sels) == 0 {
		t.Fatalf("svid %s selectors %v", svid.ID, sels)
	}
	if r := <-dec.rows; !r.allowed || r.requested != svid.ID.String() {
		t.Fatalf("allow decision %+v", r)
	}
	if a, ok := f.node.AgentAttestation(svid.ID.Path()[len("/tier0/agent/"):]); !ok || a.Attestor != nodeattest.X509PoP {
		t.Fatalf("attestation not recorded: %+v", a)
	}
	// A node-selector entry with an agent, or an unknown attestor prefix, is InvalidArgument.
	admin := f.clientAs(t, roles.AdminID(testTD))
	for _, req := range []*tier0v1.CreateEntryRequest{
		{Agent: "a", SpiffeId: "spiffe://example.org/x", NodeSelectors: []string{"x509pop:subject:cn:a"}},
		{SpiffeId: "spiffe://example.org/x", NodeSelectors: []string{"tpm:ek:1"}},
	} {
		if _, err := admin.Admin().CreateEntry(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: err = %v", req, err)
		}
	}
}

func writeTestFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
