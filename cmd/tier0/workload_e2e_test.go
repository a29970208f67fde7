package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// agentProc is a `tier0-agent run` process serving the Workload API.
type agentProc struct {
	t       *testing.T
	dataDir string
	socket  string
	cmd     *exec.Cmd
	log     *testenv.Buffer
}

// startAgent bootstraps agent name against srv and runs it.
func startAgent(t *testing.T, srv *proc, name string, args ...string) *agentProc {
	t.Helper()
	token := strings.TrimSpace(must(srv.cli("token", "create", "--agent", name)))
	a := &agentProc{t: t, dataDir: t.TempDir(), log: &testenv.Buffer{}}
	a.socket = filepath.Join(a.dataDir, "api", "agent.sock")
	must(runBin("tier0-agent", "bootstrap", "--server", srv.addr(), "--bundle", filepath.Join(srv.dataDir, "bundle.pem"),
		"--token", token, "--data-dir", a.dataDir))
	a.cmd = exec.Command(filepath.Join(binDir, "tier0-agent"), append([]string{"run", "--data-dir", a.dataDir, "--socket", a.socket}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		_ = a.cmd.Wait()
		if t.Failed() {
			t.Logf("agent %s log:\n%s", name, a.log.String())
		}
	})
	pollUntil(t, 30*time.Second, func() bool {
		fi, err := os.Stat(a.socket)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	})
	return a
}

func (a *agentProc) addr() workloadapi.ClientOption {
	return workloadapi.WithAddr("unix://" + a.socket)
}

// x509Source is a workload: a go-spiffe X509Source on the agent's socket
// whose default SVID is id.
func (a *agentProc) x509Source(ctx context.Context, id spiffeid.ID) *workloadapi.X509Source {
	a.t.Helper()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(a.addr()),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == id {
					return s
				}
			}
			return svids[0]
		}))
	if err != nil {
		a.t.Fatalf("x509 source for %s: %v", id, err)
	}
	a.t.Cleanup(func() { src.Close() })
	if s := must(src.GetX509SVID()); s.ID != id {
		a.t.Fatalf("workload got %s, want %s", s.ID, id)
	}
	return src
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestWorkloadAPIX509 runs a server, an agent serving the Workload API and
// in-test workloads using go-spiffe's own client: each gets the SVIDs its
// selectors match, sees them rotate, two of them complete an mTLS
// handshake, and they keep getting their cached SVIDs while the CA is down.
func TestWorkloadAPIX509(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, t.TempDir())
	uid := fmt.Sprint(os.Getuid())
	exe := must(os.Executable())
	web := spiffeid.RequireFromString("spiffe://example.org/web")
	db := spiffeid.RequireFromString("spiffe://example.org/db")
	for _, args := range [][]string{
		{"--spiffe-id", web.String(), "--selector", "unix:uid:" + uid},
		{"--spiffe-id", db.String(), "--selector", "unix:uid:" + uid, "--selector", "unix:path:" + exe},
		{"--spiffe-id", "spiffe://example.org/other-user", "--selector", "unix:uid:" + fmt.Sprint(os.Getuid()+1)},
		{"--spiffe-id", "spiffe://example.org/other-binary", "--selector", "unix:path:/usr/sbin/nothing-here"},
		{"--spiffe-id", "spiffe://example.org/fetch-only"},
	} {
		must(srv.cli(append([]string{"entry", "create", "--agent", "host-1", "--ttl", "15m"}, args...)...))
	}
	out := must(srv.cli("entry", "list", "-o", "json"))
	if !strings.Contains(out, `"selectors":["unix:path:`+exe+`","unix:uid:`+uid+`"]`) {
		t.Fatalf("entry list lacks the sorted selectors: %s", out)
	}
	// Renew at 0.2% of the remaining lifetime (about 2s) to see rotation.
	agent := startAgent(t, srv, "host-1", "--sync-interval", "200ms", "--renew-fraction", "0.002")

	t.Run("OnlyMatchingEntries", func(t *testing.T) {
		svids, err := workloadapi.FetchX509SVIDs(ctx, agent.addr())
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range svids {
			ids = append(ids, s.ID.String())
			if _, _, err := x509svid.Verify(s.Certificates, srv.bundle()); err != nil {
				t.Fatalf("verify %s: %v", s.ID, err)
			}
		}
		if want := []string{db.String(), web.String()}; !slices.Equal(ids, want) {
			t.Fatalf("workload got %v, want %v", ids, want)
		}
		bundles, err := workloadapi.FetchX509Bundles(ctx, agent.addr())
		if err != nil {
			t.Fatal(err)
		}
		b, err := bundles.GetX509BundleForTrustDomain(srv.td())
		if err != nil || !b.Equal(srv.bundle()) {
			t.Fatalf("bundle %v, %v", b, err)
		}
	})

	webSrc := agent.x509Source(ctx, web)
	dbSrc := agent.x509Source(ctx, db)

	t.Run("Rotation", func(t *testing.T) {
		first := must(webSrc.GetX509SVID()).Certificates[0].SerialNumber
		pollUntil(t, 30*time.Second, func() bool {
			return must(webSrc.GetX509SVID()).Certificates[0].SerialNumber.Cmp(first) != 0
		})
	})

	t.Run("MTLS", func(t *testing.T) {
		mtlsSources(t, web, webSrc, db, dbSrc)
	})

	t.Run("MissingHeader", func(t *testing.T) {
		conn, err := grpc.NewClient("unix://"+agent.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != "security header missing from request" {
			t.Fatalf("got %v, want InvalidArgument: security header missing from request", err)
		}
	})

	t.Run("CAOutage", func(t *testing.T) {
		before := must(webSrc.GetX509SVID())
		srv.kill()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		svids, err := workloadapi.FetchX509SVIDs(cctx, agent.addr())
		if err != nil {
			t.Fatalf("with the CA down: %v", err)
		}
		if len(svids) != 2 || time.Until(svids[0].Certificates[0].NotAfter) < 10*time.Minute {
			t.Fatalf("got %d SVIDs, first expiring %v", len(svids), svids[0].Certificates[0].NotAfter)
		}
		if _, _, err := x509svid.Verify(before.Certificates, srv.bundle()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWorkloadAPIUnknownCaller: an agent whose only workload entry names
// another uid refuses this process with PermissionDenied.
func TestWorkloadAPIUnknownCaller(t *testing.T) {
	ctx := testCtx(t)
	srv := startServer(t, t.TempDir())
	must(srv.cli("entry", "create", "--agent", "host-2", "--spiffe-id", "spiffe://example.org/api",
		"--selector", "unix:uid:"+fmt.Sprint(os.Getuid()+1)))
	if _, err := srv.cli("entry", "create", "--agent", "host-2", "--spiffe-id", "spiffe://example.org/x", "--selector", "unix:uid:-1"); err == nil ||
		!strings.Contains(err.Error(), `selector "unix:uid:-1": uid must be a decimal number below 2^32`) {
		t.Fatalf("bad selector: got %v", err)
	}
	agent := startAgent(t, srv, "host-2")
	_, err := workloadapi.FetchX509SVID(ctx, agent.addr())
	if status.Code(errors.Unwrap(err)) != codes.PermissionDenied && status.Code(err) != codes.PermissionDenied {
		t.Fatalf("got %v, want PermissionDenied", err)
	}
	if !strings.Contains(agent.log.String(), "workload denied: no registration entry matches") {
		t.Fatalf("deny not logged:\n%s", agent.log.String())
	}
}

// mtlsSources runs a TLS handshake between two workloads, each using its
// own source for its SVID and bundles and authorizing the other's exact ID.
func mtlsSources(t *testing.T, serverID spiffeid.ID, server interface {
	x509svid.Source
	x509bundle.Source
}, clientID spiffeid.ID, cl interface {
	x509svid.Source
	x509bundle.Source
}) {
	t.Helper()
	lis, err := spiffetls.ListenWithMode(context.Background(), "tcp", "127.0.0.1:0", spiffetls.MTLSServerWithRawConfig(tlsconfig.AuthorizeID(clientID), server, server))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	errc := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer conn.Close()
		_, err = conn.Write([]byte("ok"))
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := spiffetls.DialWithMode(ctx, "tcp", lis.Addr().String(), spiffetls.MTLSClientWithRawConfig(tlsconfig.AuthorizeID(serverID), cl, cl))
	if err != nil {
		t.Fatalf("mTLS dial: %v", err)
	}
	defer conn.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("mTLS read: %q %v", buf, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("mTLS server side: %v", err)
	}
	if peer, err := spiffetls.PeerIDFromConn(conn); err != nil || peer != serverID {
		t.Fatalf("peer id %v %v, want %v", peer, err, serverID)
	}
}
