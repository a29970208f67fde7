package api

import (
	"container/list"
	"context"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Admission before the request is read. gRPC reads and decodes a call's
// message before any handler or interceptor sees it, so a storm of calls
// refused by admission (admission.go) would still have been held in
// memory whole: the server's peak grew with the agents times their
// workloads, not with the admission bounds. The tap (grpc.InTapHandle)
// runs when a call's headers arrive, before its message is read, and
// refuses a mint call there when the queue is full, with a RetryInfo
// status detail that api/client honours like the retry-after-ms trailer.
//
// A call the tap lets through is "tapped" until its handler reaches
// admission (which counts it from then on), its stream ends, or tapHold
// passes (a peer that never sends the message does not keep its slot);
// at most maxTapped calls are tapped at once. So the mint requests the
// server holds are bounded by the admission limits: in flight (maxItems),
// queued (maxQueueItems, maxQueue) and tapped (maxTapped calls of at most
// MaxBatch items each).

const (
	mintMethod = "/tier0.v1.Agent/MintX509SVIDs"
	tapHold    = 2 * time.Second
)

type tapKey struct{}

// tapTicket is one tapped call.
type tapTicket struct {
	at   time.Time
	el   *list.Element // in admission.tapList; nil once untapped
	stop func() bool   // stops the stream-end release
	id   spiffeid.ID   // the caller, verified by the tap (authorize reuses it)
}

func tapFrom(ctx context.Context) *tapTicket {
	t, _ := ctx.Value(tapKey{}).(*tapTicket)
	return t
}

// tapMint is the server's InTapHandle. It must be cheap: it runs on the
// connection's reader goroutine. Callers that are not verified agents are
// let through (the interceptors refuse them) without a slot, so they
// cannot crowd out agents.
func (s *Server) tapMint(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != mintMethod {
		return ctx, nil
	}
	id, err := s.authn.verify(ctx)
	if err != nil {
		// Not a verified agent: the interceptors refuse it with its own code.
		return ctx, nil //nolint:nilerr // the auth interceptor reports err
	}
	t, hint, ok := s.adm.tap(ctx, time.Now())
	if !ok {
		s.metrics.overloaded.Inc()
		return nil, overloadedStatus(hint).Err()
	}
	t.id = id
	return context.WithValue(ctx, tapKey{}, t), nil
}

// overloadedStatus is the ResourceExhausted answer to a refused mint call,
// with its retry hint as a google.rpc.RetryInfo detail.
func overloadedStatus(hint time.Duration) *status.Status {
	st := status.New(codes.ResourceExhausted, errOverloaded.Error())
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(hint)}); err == nil {
		return d
	}
	return st
}

// tap admits a call whose message has not been read yet, or refuses it
// with a retry hint when the queue is full or maxTapped calls are tapped.
// The slot ends when ctx (the stream's) ends, if not before.
func (a *admission) tap(ctx context.Context, now time.Time) (*tapTicket, time.Duration, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Forget tickets older than tapHold (their message never came).
	for e := a.tapList.Front(); e != nil && now.Sub(e.Value.(*tapTicket).at) > tapHold; e = a.tapList.Front() {
		a.untapLocked(e.Value.(*tapTicket))
	}
	if a.tapped >= a.maxTapped || len(a.waiters) >= a.maxQueue || a.queuedItems >= a.maxQueueItems {
		return nil, a.retryAfterLocked(), false
	}
	t := &tapTicket{at: now}
	t.el = a.tapList.PushBack(t)
	a.tapped++
	t.stop = context.AfterFunc(ctx, func() { a.untap(t) }) // runs f on its own goroutine, never here
	return t, 0, true
}

func (a *admission) untap(t *tapTicket) {
	a.mu.Lock()
	a.untapLocked(t)
	a.mu.Unlock()
}

// untapLocked ends t's slot (once).
func (a *admission) untapLocked(t *tapTicket) {
	if t.el == nil {
		return
	}
	a.tapList.Remove(t.el)
	t.el = nil
	a.tapped--
	if t.stop != nil {
		t.stop()
	}
}
