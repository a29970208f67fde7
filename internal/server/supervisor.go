package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// loopError is how a failed goroutine stops the node: it cancels the
// node's context with this cause, and Run returns err.
type loopError struct {
	name string
	err  error
}

func (e *loopError) Error() string { return fmt.Sprintf("server: %s: %v", e.name, e.err) }
func (e *loopError) Unwrap() error { return e.err }

// group runs goroutines that stop together. Each gets the group's
// context, which only Stop cancels (not the caller's: the node stops its
// groups one after the other, in order). A goroutine that returns before
// Stop (with an error, or nil: a loop must not end on its own) is fatal:
// it reports to fail, which makes Run shut the node down.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	fail   func(error)
	wg     sync.WaitGroup
}

func newGroup(parent context.Context, fail func(error)) *group {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &group{ctx: ctx, cancel: cancel, fail: fail}
}

// Go runs fn in the group.
func (g *group) Go(name string, fn func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		err := fn(g.ctx)
		if g.ctx.Err() != nil {
			return // stopped
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		g.fail(&loopError{name: name, err: err})
	}()
}

// Stop cancels the group's context and waits for every goroutine.
func (g *group) Stop() {
	g.cancel()
	g.wg.Wait()
}

// serveUntil runs serve until ctx ends, then calls stop and waits for
// serve to return. A serve that returns first is returned as is.
func serveUntil(ctx context.Context, serve func() error, stop func()) error {
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		stop()
		return <-errc // ignored by the group: it was stopped
	}
}

// gracefulStop stops g, waiting at most d for the calls in flight.
func gracefulStop(g *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.Stop()
		<-done
	}
}
