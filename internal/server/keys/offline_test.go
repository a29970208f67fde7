package keys

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/soft"
)

// TestIssueOffline: a node SVID issued from the root key named by a
// relative soft: URI verifies against the root alone, and its record
// (uncommitted) names the node, the root as issuer and the certificate.
// A key that is not the root's is refused.
func TestIssueOffline(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	mkRoot := func(name string) ha.CARoot {
		if err := soft.Generate(filepath.Join(dir, "ca", name)); err != nil {
			t.Fatal(err)
		}
		s, err := signer.Open(ctx, "soft:"+filepath.Join(dir, "ca", name), signer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cert, err := ca.NewRoot(td, s, time.Hour*24, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return ha.CARoot{ID: rootID(cert), KeyURI: "soft:ca/" + name, CertDER: cert.Raw, State: ha.RootActive}
	}
	root, other := mkRoot("root.key"), mkRoot("other.key")
	id := spiffeid.RequireFromPath(td, "/tier0/node/n2")
	svid, rec, err := IssueOffline(ctx, OfflineConfig{TrustDomain: td, DataDir: dir, Root: root, ID: id, TTL: time.Hour, NodeID: "n2"})
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := parseCert(root.CertDER)
	if _, _, err := x509svid.Verify(svid.Certificates, x509bundle.FromX509Authorities(td, []*x509.Certificate{rootCert})); err != nil {
		t.Fatalf("offline SVID does not verify against the root: %v", err)
	}
	if ttl := time.Until(svid.Certificates[0].NotAfter); ttl < 55*time.Minute || ttl > time.Hour {
		t.Fatalf("lifetime %v", ttl)
	}
	if rec.SPIFFEID != id.String() || rec.NodeID != "n2" || rec.Seq != 0 || rec.IssuerKeyID != hex.EncodeToString(rootCert.SubjectKeyId) ||
		string(rec.CertDER) != string(svid.Certificates[0].Raw) || rec.Serial != svid.Certificates[0].SerialNumber.Text(16) {
		t.Fatalf("record %+v", rec)
	}

	wrong := root
	wrong.KeyURI = other.KeyURI
	if _, _, err := IssueOffline(ctx, OfflineConfig{TrustDomain: td, DataDir: dir, Root: wrong, ID: id, TTL: time.Hour, NodeID: "n2"}); err == nil || !strings.Contains(err.Error(), "does not match the root certificate") {
		t.Fatalf("a key that is not the root's: %v", err)
	}
	if _, _, err := IssueOffline(ctx, OfflineConfig{TrustDomain: td, DataDir: dir, Root: ha.CARoot{ID: "x", KeyURI: "soft:ca/missing.key", CertDER: root.CertDER}, ID: id, TTL: time.Hour, NodeID: "n2"}); err == nil || !strings.Contains(err.Error(), "open the CA root key") {
		t.Fatalf("a missing key: %v", err)
	}
}

func parseCert(der []byte) (*x509.Certificate, error) { return x509.ParseCertificate(der) }
