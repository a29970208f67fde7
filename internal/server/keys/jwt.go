package keys

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// JWTState is where JWT public keys are published (implemented by *ha.Node).
type JWTState interface {
	PublishJWTKey(ctx context.Context, k ha.JWTKey) error
	PruneJWTKeys(ctx context.Context) (int, error)
	CAState() ha.CAState // taints (jwt_taint.go)
}

// JWTSetter is the CA's active JWT signing key (implemented by *ca.CA).
type JWTSetter interface {
	SetJWTKey(k ca.JWTKey) error
}

// JWTKeys rotates this node's JWT-SVID signing key, like the delegated
// X.509 issuing key: a key of lifetime L is published in the bundle (raft)
// before it signs; at L/2 the next key is generated and published; at 5L/6
// it becomes the signing key, so relying parties that refresh their bundle
// more often than every L/3 know it before they see a token it signed. A
// token never outlives its key, and expired keys are pruned from the
// bundle. Private keys live only in this process's memory.
type JWTKeys struct {
	State    JWTState
	CA       JWTSetter
	NodeID   string
	Lifetime time.Duration // default 24h
	Logger   *slog.Logger

	cur ca.JWTKey
}

// Start publishes and activates the first key.
func (j *JWTKeys) Start(ctx context.Context) error {
	if j.Lifetime == 0 {
		j.Lifetime = 24 * time.Hour
	}
	if j.Logger == nil {
		j.Logger = slog.Default()
	}
	k, err := j.publish(ctx)
	if err != nil {
		return err
	}
	if err := j.CA.SetJWTKey(k); err != nil {
		return fmt.Errorf("keys: activate jwt key: %w", err)
	}
	j.cur = k
	return nil
}

func (j *JWTKeys) publish(ctx context.Context) (ca.JWTKey, error) {
	k, err := ca.NewJWTKey(time.Now(), j.Lifetime)
	if err != nil {
		return k, err
	}
	pub, err := k.PublicDER()
	if err != nil {
		return k, err
	}
	if err := j.State.PublishJWTKey(ctx, ha.JWTKey{ID: k.ID, PublicKey: pub, NotAfter: k.NotAfter, Node: j.NodeID}); err != nil {
		return k, fmt.Errorf("publish jwt key: %w", err)
	}
	j.Logger.InfoContext(ctx, "jwt signing key published", "kid", k.ID, "not_after", k.NotAfter)
	return k, nil
}

// Run rotates from the key Start activated until ctx ends.
func (j *JWTKeys) Run(ctx context.Context) error {
	cur := j.cur
	var next *ca.JWTKey
	for {
		born := cur.NotAfter.Add(-j.Lifetime)
		at := born.Add(j.Lifetime / 2)
		if next != nil {
			at = born.Add(j.Lifetime * 5 / 6)
		}
		switch j.wait(ctx, at, cur.ID) {
		case waitStopped:
			return nil
		case waitTainted:
			if k, ok := j.replaceTainted(ctx, cur.ID); ok {
				cur, next = k, nil
			}
			continue
		}
		if _, err := j.State.PruneJWTKeys(ctx); err != nil && ctx.Err() == nil {
			j.Logger.WarnContext(ctx, "prune jwt keys", "err", err)
		}
		if next != nil && j.tainted(next.ID) {
			next = nil // never activate a tainted key: publish another
		}
		if next == nil {
			k, err := j.publish(ctx)
			if err != nil {
				j.Logger.WarnContext(ctx, "prepare next jwt key; retrying", "err", err)
				_ = backoff.Sleep(ctx, 10*time.Second) // ctx ending is seen at the loop top
				continue
			}
			next = &k
			continue
		}
		if err := j.CA.SetJWTKey(*next); err != nil {
			j.Logger.ErrorContext(ctx, "activate jwt key", "err", err)
			next = nil
			continue
		}
		j.Logger.InfoContext(ctx, "jwt signing key activated", "kid", next.ID)
		cur, next = *next, nil
	}
}
