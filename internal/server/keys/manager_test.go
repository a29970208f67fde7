package keys

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
)

func TestSettingsValidate(t *testing.T) {
	for _, c := range []struct {
		s    Settings
		want string
	}{
		{Settings{Mode: "fast"}, `--signing-mode "fast": want direct or delegated`},
		{Settings{IntermediateTTL: time.Hour}, "--intermediate-ttl 1h0m0s is below 6 x the maximum SVID TTL (6h0m0s): SVIDs would outlive or be capped by their issuer"},
		{Settings{RootTTL: time.Hour}, "--intermediate-ttl, --signer-timeout and --root-probe-interval must be positive, --root-ttl at least 24h"},
		{Settings{Timeout: -time.Second}, "--intermediate-ttl, --signer-timeout and --root-probe-interval must be positive, --root-ttl at least 24h"},
		{Settings{RootProbe: -time.Second}, "--intermediate-ttl, --signer-timeout and --root-probe-interval must be positive, --root-ttl at least 24h"},
		{Settings{IntermediateTTL: time.Second, AllowShort: true}, ""},
		{Settings{Mode: Direct}, ""},
	} {
		s := c.s
		s.Defaults()
		err := s.Validate(ca.DefaultMaxTTL)
		if (err == nil) != (c.want == "") || (err != nil && err.Error() != c.want) {
			t.Errorf("%+v: %v, want %q", c.s, err, c.want)
		}
	}
}

// TestFirstStartAndRestart: the first start makes the dev root (key file
// 0600, root in raft state) and a delegated intermediate; a second manager
// over the same state reuses the root whatever Signer says.
func TestFirstStartAndRestart(t *testing.T) {
	ctx := context.Background()
	node, dir := startNode(t), t.TempDir()
	m := newManager(t, node, dir, Settings{})
	iss, err := m.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := node.CAState().Roots
	if len(roots) != 1 || roots[0].State != ha.RootActive || roots[0].KeyURI != DevRootURI {
		t.Fatalf("roots after first start: %+v", roots)
	}
	if st, err := os.Stat(filepath.Join(dir, "ca", "root.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dev root key: %v %v", st, err)
	}
	root, _ := x509.ParseCertificate(roots[0].CertDER)
	if m.SigningMode() != Delegated || bytes.Equal(iss.Cert.Raw, root.Raw) || iss.Cert.CheckSignatureFrom(root) != nil || len(iss.Chain) != 1 || !bytes.Equal(iss.Chain[0].Raw, iss.Cert.Raw) {
		t.Fatalf("issuer %v (mode %s) is not an intermediate of the root", iss.Cert.Subject, m.SigningMode())
	}
	if b := node.Bundle(); len(b.Roots) != 1 || !bytes.Equal(b.Roots[0], root.Raw) {
		t.Fatalf("bundle %d roots", len(b.Roots))
	}
	_ = m.Close()

	m2 := newManager(t, node, dir, Settings{Mode: Direct, Signer: "soft:/nonexistent/key"})
	iss2, err := m2.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(node.CAState().Roots) != 1 || !bytes.Equal(iss2.Cert.Raw, root.Raw) || m2.SigningMode() != Direct {
		t.Fatalf("restart: %d roots, issuer %v, mode %s", len(node.CAState().Roots), iss2.Cert.Subject, m2.SigningMode())
	}

	other := newManager(t, node, dir, Settings{}, func(c *Config) { c.TrustDomain = spiffeid.RequireTrustDomainFromString("other.org") })
	if _, err := other.Start(ctx); err == nil || err.Error() != `keys: the CA in this data dir is not for trust domain "other.org": use its trust domain or a new --data-dir` {
		t.Fatalf("other trust domain: %v", err)
	}
}

// TestRootRotation: prepare publishes a second root in the bundle while the
// first keeps signing; activate switches the attached CA (through Run), and
// the audit key's certificate follows the active root.
func TestRootRotation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	node, dir := startNode(t), t.TempDir()
	m := newManager(t, node, dir, Settings{Mode: Direct})
	iss, err := m.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: td, Issuer: iss, NodeID: "n1", Authorizer: denyAll{}, Journal: node})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var bundles []int
	m.Attach(c, func(b ha.Bundle) { mu.Lock(); bundles = append(bundles, len(b.Roots)); mu.Unlock() })
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	ak, err := m.OpenAuditKey(ctx, "", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	auditIssuedBy := func(root []byte) bool {
		cert, err1 := x509.ParseCertificate(ak.CertDER())
		r, err2 := x509.ParseCertificate(root)
		return err1 == nil && err2 == nil && cert.CheckSignatureFrom(r) == nil
	}
	first := node.CAState().Roots[0]
	if !auditIssuedBy(first.CertDER) {
		t.Fatal("audit key certificate not issued by the active root")
	}

	if _, err := m.PrepareRoot(ctx, "", time.Hour); !errors.Is(err, api.ErrCAKey) || !strings.Contains(err.Error(), "root lifetime 1h0m0s is below 24h") {
		t.Fatalf("short root: %v", err)
	}
	if _, err := m.PrepareRoot(ctx, "soft:/nonexistent/key", 0); !errors.Is(err, api.ErrCAKey) {
		t.Fatalf("missing key: %v", err)
	}
	if _, _, err := m.ActivateRoot(ctx, "nope", true); !errors.Is(err, ha.ErrNotFound) {
		t.Fatalf("unknown root: %v", err)
	}
	r, err := m.PrepareRoot(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != ha.RootPrepared || !bytes.Equal(c.Issuer().Cert.Raw, first.CertDER) {
		t.Fatalf("prepared root %+v; issuer changed before activation", r)
	}
	waitFor(t, "bundle callback with both roots", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bundles) > 0 && bundles[len(bundles)-1] == 2
	})
	// The node reports it can sign with the new key (Run's reconcile);
	// the publish window (default 10m) still refuses it, --force passes
	// with a warning.
	waitFor(t, "the node to report the prepared key ready", func() bool {
		rep, ok := node.CAState().Node("n1")
		return ok && slices.Contains(rep.Ready, r.ID) && rep.Issuing == first.ID
	})
	if _, _, err := m.ActivateRoot(ctx, r.ID, false); !errors.Is(err, ha.ErrPrecondition) || !strings.Contains(err.Error(), "publish window 10m0s") {
		t.Fatalf("activate inside the publish window: %v", err)
	}
	if _, warning, err := m.ActivateRoot(ctx, r.ID, true); err != nil || !strings.Contains(warning, "less than the publish window") {
		t.Fatalf("forced activation: warning %q, err %v", warning, err)
	}
	waitFor(t, "the CA to issue from the new root", func() bool { return bytes.Equal(c.Issuer().Cert.Raw, r.CertDER) })
	if !auditIssuedBy(r.CertDER) {
		t.Fatal("audit key certificate not re-issued by the new root")
	}
	waitFor(t, "the node to report issuing from the new root", func() bool {
		rep, _ := node.CAState().Node("n1")
		return rep.Issuing == r.ID
	})
	if got := m.ListRoots(); len(got) != 2 || got[0].State != ha.ViewPublishedOld || got[1].State != ha.ViewActive ||
		len(got[0].Nodes) != 1 || got[0].Nodes[0].State != ha.ViewPublishedOld || got[1].Nodes[0].State != ha.ViewActive {
		t.Fatalf("ListRoots: %+v", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}
