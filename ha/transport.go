package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/internal/roles"
)

// ALPN protocols multiplexed on the raft port. Both need a node SVID.
const (
	ProtoRaft = "tier0-raft" // hashicorp/raft NetworkTransport
	ProtoPeer = "h2"         // gRPC between nodes (forwarding, membership)
)

const handshakeTimeout = 10 * time.Second

// TLSConfig configures the mTLS stream layer.
type TLSConfig struct {
	BindAddr    string       // listen address (host:port; port 0 picks one)
	Listener    net.Listener // already bound (BindAddr is then unused); the transport owns it
	Advertise   string       // address other nodes dial; default the bound address
	TrustDomain spiffeid.TrustDomain
	SVID        x509svid.Source   // this node's SVID (rotating)
	Bundle      x509bundle.Source // roots peers' SVIDs must chain to
	Logger      *slog.Logger
	MaxPool     int           // raft connection pool per peer, default 3
	Timeout     time.Duration // raft I/O deadline, default 10s
}

// TLSTransport is a raft.Transport over TLS 1.3 with node SVIDs on both
// sides. The same port also carries the node-to-node gRPC service (ALPN
// "h2"): PeerListener returns those connections, already authenticated.
type TLSTransport struct {
	*raft.NetworkTransport
	layer *streamLayer
}

// NewTLSTransport listens on cfg.BindAddr and returns the transport.
func NewTLSTransport(cfg TLSConfig) (*TLSTransport, error) {
	if cfg.TrustDomain.IsZero() || cfg.SVID == nil || cfg.Bundle == nil {
		return nil, fmt.Errorf("ha: tls transport: trust domain, SVID and bundle are required: %w", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxPool <= 0 {
		cfg.MaxPool = 3
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.BindAddr); err != nil {
			return nil, fmt.Errorf("ha: tls transport: listen: %w", err)
		}
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("ha: tls transport: advertise address %q: %w", adv, err)
	}
	if advAddr.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("ha: tls transport: advertise address %q is unspecified: %w", adv, ErrInvalid)
	}
	l := &streamLayer{
		cfg: cfg, ln: ln, adv: advAddr,
		raftCh: make(chan net.Conn, 16), peerCh: make(chan net.Conn, 16),
		closed: make(chan struct{}),
	}
	go l.acceptLoop()
	hlog := newHCLogger(cfg.Logger)
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: cfg.MaxPool, Timeout: cfg.Timeout, Logger: hlog.Named("transport"),
	})
	return &TLSTransport{NetworkTransport: nt, layer: l}, nil
}

// PeerListener returns the authenticated node-to-node gRPC connections.
// Closing it stops its Accept (so a gRPC server on it can stop) but not
// the transport.
func (t *TLSTransport) PeerListener() net.Listener {
	return &peerListener{l: t.layer, done: make(chan struct{})}
}

// DialPeer opens an authenticated gRPC (h2) connection to another node's
// raft port; for grpc.WithContextDialer.
func (t *TLSTransport) DialPeer(ctx context.Context, addr string) (net.Conn, error) {
	return t.layer.dial(ctx, addr, ProtoPeer)
}

// streamLayer is the raft.StreamLayer: a TLS listener whose accepted
// connections are dispatched by ALPN to raft or to the peer gRPC server.
type streamLayer struct {
	cfg    TLSConfig
	ln     net.Listener
	adv    net.Addr
	raftCh chan net.Conn
	peerCh chan net.Conn

	closeOnce sync.Once
	closed    chan struct{}
}

func (l *streamLayer) serverTLS() *tls.Config {
	c := tlsconfig.MTLSServerConfig(l.cfg.SVID, l.cfg.Bundle, roles.AuthorizeNode(l.cfg.TrustDomain))
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{ProtoRaft, ProtoPeer}
	return c
}

func (l *streamLayer) clientTLS(proto string) *tls.Config {
	c := tlsconfig.MTLSClientConfig(l.cfg.SVID, l.cfg.Bundle, roles.AuthorizeNode(l.cfg.TrustDomain))
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = []string{proto}
	return c
}

func (l *streamLayer) acceptLoop() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.cfg.Logger.Error("ha: transport: accept", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		go l.handshake(c)
	}
}

// handshake authenticates an accepted connection and hands it on. A peer
// without a node SVID of this trust domain fails here.
func (l *streamLayer) handshake(c net.Conn) {
	tc := tls.Server(c, l.serverTLS())
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		l.cfg.Logger.Warn("ha: transport: peer refused", "remote", c.RemoteAddr().String(), "err", err)
		_ = c.Close()
		return
	}
	ch := l.raftCh
	if tc.ConnectionState().NegotiatedProtocol == ProtoPeer {
		ch = l.peerCh
	}
	select {
	case ch <- tc:
	case <-l.closed:
		_ = tc.Close()
	}
}

// Accept implements net.Listener for raft.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.raftCh:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close closes the listener (raft calls it at transport Close).
func (l *streamLayer) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.ln.Close()
	})
	return err
}

// Addr is the advertised address.
func (l *streamLayer) Addr() net.Addr { return l.adv }

// Dial implements raft.StreamLayer.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.dial(ctx, string(addr), ProtoRaft)
}

func (l *streamLayer) dial(ctx context.Context, addr, proto string) (net.Conn, error) {
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: l.clientTLS(proto)}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ha: transport: dial %s: %w", addr, err)
	}
	return c, nil
}

// peerListener hands out the ALPN "h2" connections.
type peerListener struct {
	l    *streamLayer
	once sync.Once
	done chan struct{}
}

func (p *peerListener) Accept() (net.Conn, error) {
	select {
	case c := <-p.l.peerCh:
		return c, nil
	case <-p.l.closed:
		return nil, net.ErrClosed
	case <-p.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; the port stays open for raft until the transport
// closes.
func (p *peerListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *peerListener) Addr() net.Addr { return p.l.adv }
