package api

import (
	"context"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/storage"
)

// DecisionRecorder is the decision log (internal/server/decisions.Log):
// it applies the --decisions policy (allows may be sampled or skipped,
// refusals are always kept) and writes to the record store.
type DecisionRecorder interface {
	Decide(d storage.Decision)
}

// Where decisions are recorded (docs/AUDIT.md "Authorization decisions"):
// exactly once per outcome, at two choke points.
//
//   - Per requested SPIFFE ID of a mint (MintX509SVIDs items, MintJWTSVID):
//     the handler records allow, deny or failure for each ID the CA
//     examined (recordItem), and marks the call recorded.
//   - Per call: the auth interceptors (auth.go unaryAuth, backup.go
//     streamAuth) record every call that ends in a non-OK status and was
//     not marked recorded: role-level refusals (an admin calling mint, an
//     agent calling Admin), unauthenticated callers, stale credentials,
//     bad input before the CA saw an ID, overload, and every refused admin
//     call (recordCall).

type noteKey struct{}

// callNote follows one call from the auth interceptor through the
// handler.
type callNote struct {
	mu        sync.Mutex
	caller    string // the verified caller's SPIFFE ID (set by authorize), or a handler's description
	requested string // set by a handler; default: the request's target field, else the method
	req       any    // the request (a stream's first message)
	recorded  bool   // the handler recorded this call's decisions itself
}

func noteFrom(ctx context.Context) *callNote {
	n, _ := ctx.Value(noteKey{}).(*callNote)
	return n
}

func withNote(ctx context.Context, req any) (context.Context, *callNote) {
	n := &callNote{req: req}
	return context.WithValue(ctx, noteKey{}, n), n
}

func (n *callNote) set(f func(n *callNote)) {
	if n == nil {
		return
	}
	n.mu.Lock()
	f(n)
	n.mu.Unlock()
}

// markRecorded says the handler recorded the call's decisions.
func markRecorded(ctx context.Context) {
	noteFrom(ctx).set(func(n *callNote) { n.recorded = true })
}

// noteCaller sets the caller (authorize, once the certificate verified).
func noteCaller(ctx context.Context, id spiffeid.ID) {
	noteFrom(ctx).set(func(n *callNote) { n.caller = id.String() })
}

// noteSubject lets a handler name the caller and the requested thing of a
// call whose caller has no SVID (node attestation).
func noteSubject(ctx context.Context, caller, requested string) {
	noteFrom(ctx).set(func(n *callNote) {
		n.caller = caller
		if requested != "" {
			n.requested = requested
		}
	})
}

// targetFields are the request fields naming what a call acts on, in
// order of preference.
var targetFields = []protoreflect.Name{"spiffe_id", "id", "name", "agent", "trust_domain", "hash_prefix", "serial", "node_id"}

// target is the first non-empty target field of req ("" when none).
func target(req any) string {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return ""
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return ""
	}
	fds := r.Descriptor().Fields()
	for _, name := range targetFields {
		fd := fds.ByName(name)
		if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
			continue
		}
		if v := r.Get(fd).String(); v != "" {
			return redact.Clip(v)
		}
	}
	return ""
}

// recordCall records a call that ended in err (nil: nothing to record),
// unless its handler recorded it per item.
func (s *Server) recordCall(ctx context.Context, method string, n *callNote, err error) {
	if err == nil || n == nil || s.cfg.Decisions == nil {
		return
	}
	n.mu.Lock()
	recorded, caller, requested, req := n.recorded, n.caller, n.requested, n.req
	n.mu.Unlock()
	if recorded {
		return
	}
	if requested == "" {
		requested = target(req)
	}
	if requested == "" {
		requested = method
	}
	st := status.Convert(err)
	reason := method + ": " + st.Message()
	if caller == "" {
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			reason += " (unauthenticated caller from " + p.Addr.String() + ")"
		}
	}
	s.cfg.Decisions.Decide(storage.Decision{Caller: caller, Requested: requested, Code: st.Code().String(), Reason: reason})
}

// recordItem records the decision about one requested SPIFFE ID of a
// mint: an allow by its entry, a failure when it was authorized and then
// not issued, else a denial with the client-safe message.
func (s *Server) recordItem(c caller, id spiffeid.ID, entryID string, err error) {
	if s.cfg.Decisions == nil {
		return
	}
	d := storage.Decision{Caller: c.id.String(), Code: codes.OK.String()}
	if !id.IsZero() {
		d.Requested = id.String()
	}
	switch {
	case err == nil:
		d.Allowed, d.Reason = true, "entry "+entryID
	case entryID != "":
		d.Code, d.Reason = codeOf(err).String(), decisions.FailedPrefix+"allowed by entry "+entryID+" but not issued: "+ca.FailureClass(err)
	default:
		d.Code, d.Reason = codeOf(err).String(), publicMessage(err)
		if codeOf(err) == codes.Internal {
			d.Reason = "internal error"
		}
	}
	s.cfg.Decisions.Decide(d)
}

// recordingStream keeps a stream's first request for recordCall.
type recordingStream struct {
	grpc.ServerStream
	n *callNote
}

func (r *recordingStream) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if err == nil {
		r.n.set(func(n *callNote) {
			if n.req == nil {
				n.req = m
			}
		})
	}
	return err
}
