package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// The node-to-node protocol: the ClusterPeer gRPC service (api/proto
// cluster.proto) on the raft port's ALPN "h2" connections (transport.go),
// which carries forwards (forward.go) from followers to the leader.
//
// The leader's refusals and failures travel in the response as ha's own
// error kinds (ForwardError: the sentinel's name and the message), so
// that each sentinel arrives intact; a gRPC status means only that the
// call itself failed, and then the outcome is unknown. See DESIGN.md
// "Forwarding" for the retry rule this serves.

// peerProtocol is ForwardRequest.protocol: the sender reads refusals from
// ForwardResponse.error. A request without it comes from an older node,
// which reads them from the gRPC status.
const peerProtocol = 1

// maxPeerMsg bounds one forward: a batch of MaxBatchRecords records with
// their certificates.
const maxPeerMsg = 64 << 20

// connectTimeout bounds waiting for a connection to the leader; past it the
// forward counts as not sent (ErrNoRoute).
const connectTimeout = time.Second

// NewPeerServer returns the ClusterPeer gRPC server answering forwards with
// n. Serve it on TLSTransport.PeerListener: those connections are TLS 1.3
// with a node SVID already verified at the handshake, so the server adds no
// credentials of its own.
func NewPeerServer(n *Node, log *slog.Logger) *grpc.Server {
	return newPeerServer(n.handleForward, log)
}

// forwardHandler serves one forward on the leader (Node.handleForward).
type forwardHandler func(ctx context.Context, kind byte, payload []byte) ([]byte, error)

func newPeerServer(h forwardHandler, log *slog.Logger) *grpc.Server {
	if log == nil {
		log = slog.Default()
	}
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxPeerMsg),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	tier0v1.RegisterClusterPeerServer(g, &peerService{handle: h, log: log})
	return g
}

type peerService struct {
	tier0v1.UnimplementedClusterPeerServer
	handle forwardHandler
	log    *slog.Logger
}

func (p *peerService) Forward(ctx context.Context, req *tier0v1.ForwardRequest) (*tier0v1.ForwardResponse, error) {
	var out []byte
	var err error
	if req.GetKind() > 255 {
		err = fmt.Errorf("ha: forward kind %d: %w", req.GetKind(), ErrInvalid)
	} else {
		out, err = p.handle(ctx, byte(req.GetKind()), req.GetPayload())
	}
	if err == nil {
		return &tier0v1.ForwardResponse{Payload: out}, nil
	}
	kind := errorKind(err)
	if kind == "" && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		p.log.Error("ha: forwarded request failed", "kind", req.GetKind(), "err", err)
	}
	if req.GetProtocol() < peerProtocol {
		// An older sender: a plain failure (gRPC Unknown), which it takes
		// as "outcome unknown" and never retries.
		return nil, err
	}
	return &tier0v1.ForwardResponse{Error: &tier0v1.ForwardError{Kind: kind, Message: err.Error()}}, nil
}

// PeerForwarder implements Forwarder over the ClusterPeer service, keeping
// one gRPC connection per leader address.
type PeerForwarder struct {
	dial func(ctx context.Context, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPeerForwarder returns a forwarder dialing with dial
// (TLSTransport.DialPeer).
func NewPeerForwarder(dial func(ctx context.Context, addr string) (net.Conn, error)) *PeerForwarder {
	return &PeerForwarder{dial: dial, conns: map[string]*grpc.ClientConn{}}
}

func (f *PeerForwarder) conn(addr string) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS is inside dial
		grpc.WithContextDialer(f.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPeerMsg), grpc.MaxCallSendMsgSize(maxPeerMsg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
	)
	if err != nil {
		return nil, fmt.Errorf("ha: peer %s: %w", addr, err)
	}
	f.conns[addr] = c
	return c, nil
}

// Forward implements Forwarder. Errors wrap ErrNoRoute when nothing was
// sent, the leader's own sentinel when it refused (ErrNotLeader: before
// proposing), and ErrUnavailable when the call failed after sending.
func (f *PeerForwarder) Forward(ctx context.Context, addr string, kind byte, payload []byte) ([]byte, error) {
	c, err := f.conn(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRoute, err)
	}
	// Make sure the connection is up before sending, so that a failure
	// to connect is known not to have sent anything.
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	c.Connect()
	for st := c.GetState(); st != connectivity.Ready; st = c.GetState() {
		if !c.WaitForStateChange(cctx, st) {
			cancel()
			return nil, fmt.Errorf("ha: forward to %s: %w: connection %s", addr, ErrNoRoute, st)
		}
	}
	cancel()
	resp, err := tier0v1.NewClusterPeerClient(c).Forward(ctx, &tier0v1.ForwardRequest{Kind: uint32(kind), Payload: payload, Protocol: peerProtocol})
	if err != nil {
		// Sent, then lost (or refused by an older leader): the leader
		// may have proposed it.
		return nil, fmt.Errorf("ha: forward to %s: %w: %v", addr, ErrUnavailable, err)
	}
	if e := resp.GetError(); e != nil {
		return nil, fmt.Errorf("ha: forward to %s: %w", addr, leaderError(e.GetKind(), e.GetMessage(), ErrUnavailable))
	}
	return resp.GetPayload(), nil
}

// Close closes the connections.
func (f *PeerForwarder) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for a, c := range f.conns {
		errs = append(errs, c.Close())
		delete(f.conns, a)
	}
	return errors.Join(errs...)
}

// errorKinds names ha's sentinels on the wire, in the order an error is
// classified: one that wraps two takes the first, so "not leader" (never
// proposed) is never hidden by another.
var errorKinds = []struct {
	name string
	err  error
}{
	{"not-leader", ErrNotLeader}, {"invalid", ErrInvalid}, {"not-found", ErrNotFound},
	{"unavailable", ErrUnavailable}, {"exists", ErrExists}, {"token-invalid", ErrTokenInvalid},
	{"replayed", ErrReplayed},
	{"denied", ErrDenied},
}

// errorKind returns the wire name of the sentinel err wraps, "" for none.
func errorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return ""
}

// leaderError rebuilds an error the leader reported: its message, wrapping
// the sentinel named by kind, or otherwise when kind names none.
func leaderError(kind, msg string, otherwise error) error {
	for _, k := range errorKinds {
		if k.name == kind {
			return fmt.Errorf("%s (on leader): %w", msg, k.err)
		}
	}
	if otherwise == nil {
		return fmt.Errorf("ha: forward: leader: %s", msg)
	}
	return fmt.Errorf("%s (on leader): %w", msg, otherwise)
}
