package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// jwtKeys rotates this node's JWT-SVID signing key, like the delegated
// X.509 issuing key: a key of lifetime L is published in the bundle (Raft)
// before it signs; at L/2 the next key is generated and published; at 5L/6
// it becomes the signing key, so relying parties that refresh their bundle
// more often than every L/3 know it before they see a token it signed. A
// token never outlives its key, and expired keys are pruned from the bundle.
// Private keys live only in this process's memory.
type jwtKeys struct {
	node     *ha.Node
	ca       *ca.CA
	nodeID   string
	lifetime time.Duration
	log      *slog.Logger
}

// start publishes and activates the first key.
func (j *jwtKeys) start(ctx context.Context) (ca.JWTKey, error) {
	k, err := j.publish(ctx)
	if err != nil {
		return k, err
	}
	if err := j.ca.SetJWTKey(k); err != nil {
		return k, err
	}
	return k, nil
}

func (j *jwtKeys) publish(ctx context.Context) (ca.JWTKey, error) {
	k, err := ca.NewJWTKey(time.Now(), j.lifetime)
	if err != nil {
		return k, err
	}
	pub, err := k.PublicDER()
	if err != nil {
		return k, err
	}
	if err := j.node.PublishJWTKey(ctx, ha.JWTKey{ID: k.ID, PublicKey: pub, NotAfter: k.NotAfter, Node: j.nodeID}); err != nil {
		return k, fmt.Errorf("publish jwt key: %w", err)
	}
	j.log.InfoContext(ctx, "jwt signing key published", "kid", k.ID, "not_after", k.NotAfter)
	return k, nil
}

// run rotates from the active key cur until ctx ends.
func (j *jwtKeys) run(ctx context.Context, cur ca.JWTKey) {
	var next *ca.JWTKey
	for {
		born := cur.NotAfter.Add(-j.lifetime)
		at := born.Add(j.lifetime / 2)
		if next != nil {
			at = born.Add(j.lifetime * 5 / 6)
		}
		t := time.NewTimer(max(0, time.Until(at)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := j.node.PruneJWTKeys(ctx); err != nil && ctx.Err() == nil {
			j.log.WarnContext(ctx, "prune jwt keys", "err", err)
		}
		if next == nil {
			k, err := j.publish(ctx)
			if err != nil {
				j.log.WarnContext(ctx, "prepare next jwt key; retrying", "err", err)
				_ = backoff.Sleep(ctx, 10*time.Second) // ctx ending is seen at the loop top
				continue
			}
			next = &k
			continue
		}
		if err := j.ca.SetJWTKey(*next); err != nil {
			j.log.ErrorContext(ctx, "activate jwt key", "err", err)
			next = nil
			continue
		}
		j.log.InfoContext(ctx, "jwt signing key activated", "kid", next.ID)
		cur, next = *next, nil
	}
}
