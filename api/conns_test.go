package api

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// waitClosed reads from c until the server closes it; a read that runs
// into the (generous) deadline means the server kept the connection.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: the server kept the connection open for 30s", what)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: read: %v", what, err)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// dialFrom opens a TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// bootstrapCall makes one real call (TLS, HTTP/2, a handler) from src: an
// empty join token is InvalidArgument, which proves the server answered.
func bootstrapCall(ctx context.Context, f *fixture, src string) (*grpc.ClientConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := grpc.NewClient("passthrough:///"+f.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(f.bundle, tlsconfig.AuthorizeAny()))),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		return nil, err
	}
	_, err = tier0v1.NewBootstrapClient(conn).AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{})
	if status.Code(err) != codes.InvalidArgument {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// TestHandshakeTimeout: a client that connects and never starts TLS, or
// finishes TLS and never speaks HTTP/2, is closed after HandshakeTimeout.
func TestHandshakeTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	raw := dialFrom(t, "127.0.0.1", f.addr)
	waitClosed(t, raw, "silent TCP client")

	tc, err := tls.Dial("tcp", f.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // only the handshake matters
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	waitClosed(t, tc, "client silent after TLS")
	if g := metricValue(t, f.srv.metrics.pending); g != 0 {
		t.Errorf("pending handshakes gauge = %v after both closed, want 0", g)
	}
}

// TestIdleTimeout: a connection with no call for IdleTimeout is closed by
// the server (GOAWAY), and the client reconnects on its next call.
func TestIdleTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := bootstrapCall(ctx, f, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for st := conn.GetState(); st != connectivity.Idle; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("connection still %v: the server never closed it for idleness", st)
		}
	}
	if _, err := tier0v1.NewBootstrapClient(conn).AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("call after the idle close: %v", err)
	}
}

// TestPendingPerSource: the N+1th connection from one address that is not
// through the TLS handshake is refused (closed at once, counted) while
// another address still gets served; a closed or handshaken connection
// frees its slot.
func TestPendingPerSource(t *testing.T) {
	const limit = 2
	f := newFixture(t, func(c *Config) { c.MaxPendingPerSource = limit })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	silent := []net.Conn{dialFrom(t, "127.0.0.1", f.addr), dialFrom(t, "127.0.0.1", f.addr)}
	// Accept is sequential, so this third one is counted after the two.
	waitClosed(t, dialFrom(t, "127.0.0.1", f.addr), "connection over the per-source bound")
	if n := metricValue(t, f.srv.metrics.connRefused); n != 1 {
		t.Fatalf("tier0_api_connections_refused_total = %v, want 1", n)
	}
	if g := metricValue(t, f.srv.metrics.pending); g != limit {
		t.Fatalf("pending handshakes = %v, want %d", g, limit)
	}
	conn, err := bootstrapCall(ctx, f, "127.0.0.2")
	if err != nil {
		t.Fatalf("another source address is refused too: %v", err)
	}
	conn.Close()

	// Closing a silent connection frees its slot: a real call from the
	// first address gets through (the server sees the close when its
	// handshake read fails, so poll).
	silent[0].Close()
	for {
		conn, err := bootstrapCall(ctx, f, "127.0.0.1")
		if err == nil {
			defer conn.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("slot never freed: %v", err)
		}
	}
	// Handshaken connections hold no slot: with one silent connection
	// still pending, several more real connections from the same address
	// are served at once.
	for range 2 * limit {
		conn, err := bootstrapCall(ctx, f, "127.0.0.1")
		if err != nil {
			t.Fatalf("handshaken connections count against the bound: %v", err)
		}
		defer conn.Close()
	}
	if g := metricValue(t, f.srv.metrics.pending); g != 1 {
		t.Fatalf("pending handshakes = %v, want 1 (the remaining silent connection)", g)
	}
}

func TestSourceKey(t *testing.T) {
	for _, c := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 5}, "10.0.0.1"},
		{&net.TCPAddr{IP: net.ParseIP("::1"), Port: 5}, "::1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1"), Port: 5}, "10.0.0.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1"), Port: 5}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9"), Port: 5}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, "/run/x.sock"},
	} {
		if got := sourceKey(c.addr); got != c.want {
			t.Errorf("sourceKey(%v) = %q, want %q", c.addr, got, c.want)
		}
	}
}

// TestHTTPServerClosesSilentClients: the HTTP listeners (bundle endpoint,
// health port) drop a client that never finishes its TLS handshake or its
// request header, and one idle after a request (keep-alive) is not kept
// beyond IdleTimeout.
func TestHTTPServerClosesSilentClients(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := HTTPServer(http.NotFoundHandler())
	if hs.IdleTimeout <= 0 || hs.ReadTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("HTTPServer leaves a bound unset: %+v", hs)
	}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { hs.Close() })
	raw := dialFrom(t, "127.0.0.1", lis.Addr().String())
	if _, err := raw.Write([]byte("GET / HTTP/1.1\r\n")); err != nil { // a header never finished
		t.Fatal(err)
	}
	waitClosed(t, raw, "HTTP client that never finishes its header")
}
