package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ha"
)

// Cold start (docs/OPERATIONS.md "Kubernetes"): every member of a cluster
// may start at once, in any order, after a full stop or on a first install
// where the joining members' tokens are created only once the first member
// is up. A member therefore waits, without limit, for what it needs from
// the others (its join token and bundle files, the replicated CA root, a
// leader; the last two only while some member answers it, waitlimit.go),
// serving /livez, /readyz (not ready, with the reason) and /metrics
// meanwhile, and logging what it waits for every waitLogEvery.

// waitPoll is how often a cold-start wait looks again; waitLogEvery how
// often it logs that it is still waiting.
const (
	waitPoll     = 100 * time.Millisecond
	waitLogEvery = 30 * time.Second
	removedEvery = 5 * time.Second
)

// waitUntil polls cond until it returns true (nil), an error (returned) or
// ctx ends. It sets the startup phase to "starting: what" and logs at
// once, then every waitLogEvery, "still waiting" with detail().
func waitUntil(ctx context.Context, log *slog.Logger, phase func(string), what string, cond func() (bool, error), detail func() []any) error {
	if ok, err := cond(); ok || err != nil {
		return err
	}
	phase(what)
	start := time.Now()
	log.Info("cluster: "+what, detail()...)
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	next := start.Add(waitLogEvery)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if ok, err := cond(); ok || err != nil {
			if err == nil {
				log.Info("cluster: "+what+": done", "waited", time.Since(start).Round(time.Millisecond))
			}
			return err
		}
		if now := time.Now(); now.After(next) {
			next = now.Add(waitLogEvery)
			log.Warn("cluster: "+what+" (still)", append([]any{"waited", now.Sub(start).Round(time.Second)}, detail()...)...)
		}
	}
}

// fileReady reports whether path exists and is not empty; other errors
// than "does not exist" (permissions) are returned.
func fileReady(path string) (bool, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("cluster: %w", err)
	}
	return st.Size() > 0, nil
}

// readTokenFile reads a node join token file (one line).
func readTokenFile(path string) (string, error) {
	raw, err := os.ReadFile(path) //nolint:gosec // G304: the operator names the file
	if err != nil {
		return "", fmt.Errorf("cluster: --join-token-file: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}

// waitLeaderAndRoot waits until the cluster has a leader
// and this node holds the replicated CA root (a restarting member: it must
// see the root before the key manager looks at it, which would otherwise
// create one).
func waitLeaderAndRoot(ctx context.Context, node *ha.Node, log *slog.Logger, phase func(string), needRoot bool, removed func(context.Context) error) error {
	// A member removed while it was down does not know it: every
	// removedEvery it asks the others (peerWatch), and gives up when none
	// has answered for --cluster-wait-timeout.
	nextAsk := time.Now().Add(removedEvery)
	cond := func(check func() (bool, error)) func() (bool, error) {
		return func() (bool, error) {
			if ok, err := check(); ok || err != nil {
				return ok, err
			}
			if time.Now().After(nextAsk) {
				nextAsk = time.Now().Add(removedEvery)
				if err := removed(ctx); err != nil {
					return false, err
				}
			}
			return false, nil
		}
	}
	detail := func() []any {
		st := node.Status()
		var members []string
		for _, s := range st.Servers {
			members = append(members, s.ID+"="+s.Address)
		}
		return []any{"state", st.State, "term", st.Term, "last_index", st.LastIndex,
			"members", strings.Join(members, ","), "hint", "the other members must be started too: a leader needs a majority of the voters"}
	}
	if needRoot {
		if err := waitUntil(ctx, log, phase, "raft: waiting for the CA root from the cluster", cond(func() (bool, error) {
			_, ok := node.CAState().Active()
			return ok, nil
		}), detail); err != nil {
			return err
		}
	}
	return waitUntil(ctx, log, phase, "raft: waiting for a leader", cond(func() (bool, error) {
		wctx, cancel := context.WithTimeout(ctx, waitPoll)
		defer cancel()
		err := node.WaitLeader(wctx)
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() != nil:
			return false, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			return false, nil
		}
		return false, fmt.Errorf("raft: no leader: %w", err)
	}), detail)
}
