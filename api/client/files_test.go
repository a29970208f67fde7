package client

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client/clienttest"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/atomicfile"
)

func TestWriteAndLoadSVIDFiles(t *testing.T) {
	e := newEnv(t)
	svid := e.ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/web"), time.Hour)
	dir := filepath.Join(t.TempDir(), "out", "web")
	if err := WriteSVIDFiles(dir, svid, e.ca.Bundle); err != nil {
		t.Fatal(err)
	}
	// Overwrite to exercise replacement.
	if err := WriteSVIDFiles(dir, svid, e.ca.Bundle); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadSVIDFiles(filepath.Join(dir, SVIDFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != svid.ID || !got.Certificates[0].Equal(svid.Certificates[0]) {
		t.Fatalf("loaded %s, want %s", got.ID, svid.ID)
	}
	b, err := LoadBundleFile(filepath.Join(dir, BundleFile), e.ca.TD)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Equal(e.ca.Bundle) {
		t.Fatal("bundle differs")
	}
	na, err := LeafNotAfter(filepath.Join(dir, SVIDFile))
	if err != nil || na != svid.Certificates[0].NotAfter.Unix() {
		t.Fatalf("LeafNotAfter = %d, %v", na, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, de := range entries {
		if strings.Contains(de.Name(), ".tmp") {
			t.Fatalf("temporary file left: %s", de.Name())
		}
	}
}

func TestLoadBundleFileErrors(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadBundleFile(empty, td); err == nil || err.Error() != "client: load bundle "+empty+": no certificates" {
		t.Fatalf("got %v", err)
	}
	if _, err := LoadBundleFile(filepath.Join(t.TempDir(), "missing.pem"), td); err == nil || !strings.HasPrefix(err.Error(), "client: load bundle: ") {
		t.Fatalf("got %v", err)
	}
}

func TestNewCSR(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	for _, tt := range []struct {
		id   spiffeid.ID
		uris int
	}{{id: id, uris: 1}, {uris: 0}} {
		der, key, err := NewCSR(tt.id)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatal(err)
		}
		if len(csr.URIs) != tt.uris || (tt.uris == 1 && csr.URIs[0].String() != id.String()) {
			t.Fatalf("URIs %v", csr.URIs)
		}
		if csr.PublicKeyAlgorithm != x509.ECDSA || key == nil {
			t.Fatalf("key algorithm %v", csr.PublicKeyAlgorithm)
		}
	}
}

func TestParseChain(t *testing.T) {
	e := newEnv(t)
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	csr, key, err := NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := e.ca.SignCSR(csr, spiffeid.ID{}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if svid, err := ParseChain(chain, key, e.ca.Bundle); err != nil || svid.ID != id {
		t.Fatalf("ParseChain = %v, %v", svid, err)
	}
	_, otherKey, _ := NewCSR(id)
	other := clienttest.NewCA(t, "example.org")
	tests := []struct {
		name  string
		chain [][]byte
		want  string
		bad   func() error
	}{
		{name: "empty", want: "client: empty certificate chain", bad: func() error { _, err := ParseChain(nil, key, e.ca.Bundle); return err }},
		{name: "wrong key", want: "client: parse svid: x509svid: private key validation failed: leaf certificate does not match private key", bad: func() error { _, err := ParseChain(chain, otherKey, e.ca.Bundle); return err }},
		{name: "other CA", want: "client: verify svid: x509svid: could not verify leaf certificate: x509: certificate signed by unknown authority", bad: func() error {
			_, err := ParseChain(chain, key, other.Bundle)
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.bad(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestBundleFromResponse(t *testing.T) {
	e := newEnv(t)
	b, err := BundleFromResponse(e.ca.TD, &tier0v1.GetBundleResponse{X509Authorities: [][]byte{e.ca.Root.Raw}, TrustDomain: "example.org"})
	if err != nil || !b.Equal(e.ca.Bundle) {
		t.Fatalf("got %v", err)
	}
	for _, tt := range []struct {
		resp *tier0v1.GetBundleResponse
		want string
	}{
		{resp: &tier0v1.GetBundleResponse{X509Authorities: [][]byte{e.ca.Root.Raw}, TrustDomain: "evil.org"}, want: `client: bundle is for trust domain "evil.org", want "example.org"`},
		{resp: &tier0v1.GetBundleResponse{}, want: "client: bundle has no x509 authorities"},
		{resp: &tier0v1.GetBundleResponse{X509Authorities: [][]byte{{1, 2}}}, want: "client: bundle authority 0: x509: malformed certificate"},
	} {
		if _, err := BundleFromResponse(e.ca.TD, tt.resp); err == nil || err.Error() != tt.want {
			t.Errorf("got %v, want %q", err, tt.want)
		}
	}
}

func TestDialOperatorFiles(t *testing.T) {
	e := newEnv(t)
	dataDir := t.TempDir()
	admin := e.ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/tier0/admin"), time.Hour)
	if err := WriteSVIDFiles(filepath.Join(dataDir, "admin"), admin, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteBundleFile(filepath.Join(dataDir, BundleFile), e.ca.Bundle); err != nil {
		t.Fatal(err)
	}
	bundle, cert, key := OperatorFiles(dataDir)
	c, err := Dial(testCtx(t), []string{e.fake.Start(t, "n1")}, nil, bundle, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The fake serves no Admin service; reaching it proves the mTLS handshake.
	_, err = c.Admin().ListEntries(testCtx(t), &tier0v1.ListEntriesRequest{})
	if err == nil || !strings.Contains(err.Error(), "Unimplemented") {
		t.Fatalf("got %v, want Unimplemented", err)
	}
}

// TestWriteSVIDFilesRefusesSymlinks: a symbolic link planted as key.pem
// (or bundle.pem), or as the credential directory itself, is refused with
// a clear error and its target is left untouched.
func TestWriteSVIDFilesRefusesSymlinks(t *testing.T) {
	e := newEnv(t)
	svid := e.ca.Issue(t, spiffeid.RequireFromString("spiffe://example.org/web"), time.Hour)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	untouched := func() {
		t.Helper()
		if got, _ := os.ReadFile(victim); string(got) != "victim" {
			t.Fatalf("the link's target was written: %q", got)
		}
	}
	for _, name := range []string{KeyFile, SVIDFile, BundleFile} {
		dir := t.TempDir()
		if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		err := WriteSVIDFiles(dir, svid, e.ca.Bundle)
		want := "client: write " + map[bool]string{true: "bundle", false: "svid"}[name == BundleFile] +
			": atomicfile: write " + filepath.Join(dir, name) + ": is a symbolic link: refusing to write through it"
		if !errors.Is(err, atomicfile.ErrSymlink) || err.Error() != want {
			t.Fatalf("%s planted: %v\nwant %s", name, err, want)
		}
		untouched()
	}
	// The directory itself a link: refused, nothing written in its target.
	targetDir := t.TempDir()
	link := filepath.Join(t.TempDir(), "creds")
	if err := os.Symlink(targetDir, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteSVIDFiles(link, svid, nil); !errors.Is(err, atomicfile.ErrSymlink) {
		t.Fatalf("directory link: %v, want ErrSymlink", err)
	}
	if entries, _ := os.ReadDir(targetDir); len(entries) != 0 {
		t.Fatalf("%d files written through the directory link", len(entries))
	}
}
