package operator

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// TestHealth: /readyz's answer (200 or the reasons), the verbose path,
// the address from server.json, and a node that does not answer.
func TestHealth(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz" && r.URL.RawQuery == "verbose&standbyok":
			w.Write([]byte(`{"role":"leader"}` + "\n"))
		case r.URL.Path == "/readyz" && ready:
			w.Write([]byte("ok\n"))
		case r.URL.Path == "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("signer: down\njournal: full\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	o := HealthOptions{Addr: addr, Timeout: 5 * time.Second}
	if a, err := Health(t.Context(), o); err != nil || a != (HealthAnswer{200, "ok"}) {
		t.Fatalf("ready: %+v %v", a, err)
	}
	ready = false
	a, err := Health(t.Context(), o)
	if want := "healthcheck: " + addr + ": 503 signer: down"; err == nil || err.Error() != want || a.Code != 503 || a.Text != "signer: down\njournal: full" {
		t.Fatalf("not ready: %+v %v", a, err)
	}
	o.Verbose = true
	if a, err := Health(t.Context(), o); err != nil || a.Text != `{"role":"leader"}` {
		t.Fatalf("verbose: %+v %v", a, err)
	}

	dir := t.TempDir()
	if _, err := Health(t.Context(), HealthOptions{DataDir: dir, Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "no --http and no running server in "+dir) {
		t.Fatalf("no server.json: %v", err)
	}
	if err := serverinfo.Write(dir, serverinfo.Info{HTTP: addr}); err != nil {
		t.Fatal(err)
	}
	if a, err := Health(t.Context(), HealthOptions{DataDir: dir, Timeout: 5 * time.Second}); err == nil || a.Code != 503 {
		t.Fatalf("from server.json: %+v %v", a, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if a, err := Health(t.Context(), HealthOptions{Addr: closed, Timeout: 5 * time.Second}); err == nil || a.Code != 0 || !strings.Contains(err.Error(), closed+" not answering") {
		t.Fatalf("closed port: %+v %v", a, err)
	}
}
