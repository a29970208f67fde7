package api

import (
	"net"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
)

// Connections that have not finished their TLS handshake cost the server a
// goroutine and a socket while proving nothing, so the API port bounds them
// per source IP address (Config.MaxPendingPerSource): the listener counts a
// connection from Accept until its handshake ends (success or failure) or
// it closes, and closes at once a connection over the bound. Together with
// the handshake timeout (Config.HandshakeTimeout, gRPC's ConnectionTimeout)
// a silent client holds at most that many slots for at most that long.

// pendingLimiter counts not-yet-handshaken connections per source.
type pendingLimiter struct {
	max     int
	refused prometheus.Counter
	gauge   prometheus.Gauge

	mu      sync.Mutex
	pending map[string]int
}

func newPendingLimiter(limit int, m *metrics) *pendingLimiter {
	return &pendingLimiter{max: limit, refused: m.connRefused, gauge: m.pending, pending: map[string]int{}}
}

// sourceKey is the source a remote address counts against: its IPv4
// address, or its IPv6 /64 (one host usually holds a whole /64, so counting
// single IPv6 addresses would not bound it); a non-IP address (a Unix
// socket) counts as one source.
func sourceKey(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		if t.IP.To4() != nil || t.IP.IsLoopback() {
			return t.IP.String()
		}
		return t.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

func (l *pendingLimiter) acquire(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[src] >= l.max {
		return false
	}
	l.pending[src]++
	l.gauge.Inc()
	return true
}

func (l *pendingLimiter) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending[src]--; l.pending[src] <= 0 {
		delete(l.pending, src)
	}
	l.gauge.Dec()
}

// limitListener admits a connection only while its source has fewer than
// max pending ones.
type limitListener struct {
	net.Listener
	l *pendingLimiter
}

// Accept returns the next admitted connection; refused ones are closed
// and counted, never returned.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := sourceKey(c.RemoteAddr())
		if !ll.l.acquire(src) {
			ll.l.refused.Inc()
			_ = c.Close()
			continue
		}
		return &pendingConn{Conn: c, done: func() { ll.l.release(src) }}, nil
	}
}

// pendingConn holds its source's slot until handshakeDone or Close.
type pendingConn struct {
	net.Conn
	once sync.Once
	done func()
}

func (p *pendingConn) handshakeDone() { p.once.Do(p.done) }

// Close releases the slot (if the handshake never ended) and closes.
func (p *pendingConn) Close() error {
	p.handshakeDone()
	return p.Conn.Close()
}

// handshakeCreds releases a pendingConn's slot when the TLS handshake ends.
type handshakeCreds struct {
	credentials.TransportCredentials
}

// ServerHandshake runs the TLS handshake, then frees the source's slot
// whatever its outcome.
func (h handshakeCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := h.TransportCredentials.ServerHandshake(raw)
	if p, ok := raw.(*pendingConn); ok {
		p.handshakeDone()
	}
	return conn, info, err
}

// Clone keeps the wrapper.
func (h handshakeCreds) Clone() credentials.TransportCredentials {
	return handshakeCreds{h.TransportCredentials.Clone()}
}
