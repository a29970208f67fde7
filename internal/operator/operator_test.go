package operator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/internal/serverinfo"
)

func TestErr(t *testing.T) {
	if got := Err(status.Error(codes.PermissionDenied, "no entry")).Error(); got != "PermissionDenied: no entry" {
		t.Fatalf("status: %q", got)
	}
	plain := errors.New("dial tcp: refused")
	if got := Err(fmt.Errorf("x: %w", plain)); !errors.Is(got, plain) {
		t.Fatalf("plain error changed: %v", got)
	}
}

func TestDialExplains(t *testing.T) {
	dir := t.TempDir()
	_, err := Dial(context.Background(), Options{DataDir: dir}, "admin")
	if want := "no " + dir + "/server.json: start `tier0 server` with this --data-dir, or pass --server and --trust-domain-of-server"; err == nil || err.Error() != want {
		t.Fatalf("no server.json: %v", err)
	}
	if err := serverinfo.Write(dir, serverinfo.Info{TrustDomain: "example.org", Servers: []string{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(context.Background(), Options{DataDir: dir}, "admin"); err == nil {
		t.Fatal("dialed without a bundle")
	}
	if got := (Options{DataDir: dir}).TrustDomainName(); got != "example.org" {
		t.Fatalf("TrustDomainName = %q", got)
	}
	if got := (Options{DataDir: filepath.Join(dir, "none"), TrustDomain: "x.org"}).TrustDomainName(); got != "x.org" {
		t.Fatalf("TrustDomainName = %q", got)
	}
}
