package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// cache keeps an X509-SVID for every workload entry (an entry with
// selectors) granted to this agent. It mints eagerly and renews ahead of
// expiry, so workloads are served from memory and a CA outage shorter than
// the remaining lifetime is invisible to them. Renewals due together go to
// the server in one MintX509SVIDs call.
type cache struct {
	e *env
	a *agent

	syncEvery     time.Duration // how often the entry list is refreshed
	renewFraction float64       // renew after this fraction of the remaining lifetime
	batch         int           // items per MintX509SVIDs call

	mu      sync.Mutex
	entries []*tier0v1.Entry          // workload entries, sorted by SPIFFE ID
	svids   map[string]*x509svid.SVID // by SPIFFE ID
	renewAt map[string]time.Time      // by SPIFFE ID
	failed  map[string]retry          // by SPIFFE ID
	changed chan struct{}             // closed and replaced on every change
	ready   chan struct{}             // closed after the first entry sync
	synced  bool

	attempts attempts // unanswered requests, reused by their retries (idem.go)
}

// retry is the backoff state of an SVID whose minting failed.
type retry struct {
	at      time.Time
	backoff time.Duration
}

func newCache(e *env, a *agent, syncEvery time.Duration, renewFraction float64, batch int) (*cache, error) {
	if syncEvery <= 0 {
		return nil, fmt.Errorf("--sync-interval must be positive, got %s", syncEvery)
	}
	if renewFraction <= 0 || renewFraction >= 1 {
		return nil, fmt.Errorf("--renew-fraction must be in (0, 1), got %v", renewFraction)
	}
	if batch <= 0 {
		batch = 100
	}
	return &cache{
		e: e, a: a, syncEvery: syncEvery, renewFraction: renewFraction, batch: batch,
		svids: map[string]*x509svid.SVID{}, renewAt: map[string]time.Time{}, failed: map[string]retry{},
		changed: make(chan struct{}), ready: make(chan struct{}),
	}, nil
}

func (c *cache) Name() string { return "workload svid cache" }

// waitReady waits for the first entry sync, so that a workload calling
// right after the agent started is not refused for want of entries.
func (c *cache) waitReady(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("the agent has not yet fetched its registration entries from the server")
	}
}

// notify wakes every watcher (FetchX509SVID streams and friends).
func (c *cache) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notifyLocked()
}

func (c *cache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// view is what one workload may see: the valid SVIDs of the entries it
// matches (sorted by SPIFFE ID) and the federated trust domains those
// entries name (their union, as SPIRE sends it).
type view struct {
	ids       []string // SPIFFE IDs of the matched entries, sorted
	svids     []*x509svid.SVID
	federates map[string]bool // trust domain names
	// pending counts matched entries whose first SVID is still being
	// minted (none cached, no failure yet): a response sent now would
	// lack them, and a workload would see an identity appear later.
	pending int
}

// snapshot returns the view of workload w, whether it matches any entry at
// all, and a channel closed on the next change.
func (c *cache) snapshot(w ca.Workload) (v view, matched bool, changed <-chan struct{}) {
	now := c.e.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	v.federates = map[string]bool{}
	for _, en := range c.entries {
		if !w.Matches(en.GetSelectors()) {
			continue
		}
		matched = true
		v.ids = append(v.ids, en.GetSpiffeId())
		for _, td := range en.GetFederatesWith() {
			v.federates[td] = true
		}
		s := c.svids[en.GetSpiffeId()]
		if s != nil && now.Before(s.Certificates[0].NotAfter) {
			v.svids = append(v.svids, s)
		} else if _, failed := c.failed[en.GetSpiffeId()]; s == nil && !failed {
			v.pending++
		}
	}
	return v, matched, c.changed
}

// matching returns the SPIFFE IDs of the entries w matches, sorted.
func (c *cache) matching(w ca.Workload) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, en := range c.entries {
		if w.Matches(en.GetSelectors()) {
			ids = append(ids, en.GetSpiffeId())
		}
	}
	return ids
}

func (c *cache) Run(ctx context.Context) error {
	log := c.e.logger()
	var nextSync time.Time
	for {
		now := c.e.now()
		if !now.Before(nextSync) {
			if err := c.sync(ctx); err != nil {
				if ctx.Err() != nil {
					return nil //nolint:nilerr // stopped, not failed
				}
				log.WarnContext(ctx, "entry sync failed; serving cached SVIDs", "err", describe(err))
			}
			nextSync = c.e.now().Add(c.syncEvery)
		}
		if due := c.due(c.e.now()); len(due) > 0 {
			c.mint(ctx, due)
		}
		wait := min(nextSync.Sub(c.e.now()), c.nextRenewal().Sub(c.e.now()))
		if backoff.Sleep(ctx, max(10*time.Millisecond, wait)) != nil {
			return nil //nolint:nilerr // stopped, not failed
		}
	}
}

// sync refreshes the workload entries; SVIDs of removed entries are dropped.
func (c *cache) sync(ctx context.Context) error {
	cl, err := c.e.dial(ctx, c.a)
	if err != nil {
		return err
	}
	defer cl.Close()
	if changed, err := c.e.syncBundle(ctx, cl, c.a); err != nil {
		c.e.logger().WarnContext(ctx, "bundle refresh failed", "err", describe(err))
	} else if changed {
		c.notify()
	}
	c.followTaints(ctx)
	resp, err := cl.Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{})
	if err != nil {
		return fmt.Errorf("list authorized entries: %w", err)
	}
	var entries []*tier0v1.Entry
	keep := map[string]bool{}
	for _, en := range resp.GetEntries() {
		if len(en.GetSelectors()) == 0 || keep[en.GetSpiffeId()] {
			continue
		}
		if _, err := spiffeid.FromString(en.GetSpiffeId()); err != nil {
			c.e.logger().WarnContext(ctx, "ignoring entry with a bad spiffe id", "entry", en.GetId(), "err", err)
			continue
		}
		keep[en.GetSpiffeId()] = true
		entries = append(entries, en)
	}
	slices.SortFunc(entries, func(x, y *tier0v1.Entry) int {
		if x.GetSpiffeId() < y.GetSpiffeId() {
			return -1
		}
		if x.GetSpiffeId() > y.GetSpiffeId() {
			return 1
		}
		return 0
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.synced {
		c.synced = true
		close(c.ready)
	}
	same := slices.EqualFunc(entries, c.entries, func(x, y *tier0v1.Entry) bool {
		return x.GetId() == y.GetId() && x.GetSpiffeId() == y.GetSpiffeId() && x.GetTtlSeconds() == y.GetTtlSeconds() &&
			slices.Equal(x.GetSelectors(), y.GetSelectors()) && slices.Equal(x.GetFederatesWith(), y.GetFederatesWith())
	})
	if same {
		return nil
	}
	old := map[string]*tier0v1.Entry{}
	for _, en := range c.entries {
		old[en.GetSpiffeId()] = en
	}
	for _, en := range entries {
		if o := old[en.GetSpiffeId()]; o != nil && o.GetTtlSeconds() != en.GetTtlSeconds() {
			delete(c.renewAt, en.GetSpiffeId()) // new TTL: mint again now
		}
	}
	for id := range c.svids {
		if !keep[id] {
			delete(c.svids, id)
			delete(c.renewAt, id)
			delete(c.failed, id)
		}
	}
	c.entries = entries
	c.notifyLocked()
	return nil
}

// due lists the SPIFFE IDs to mint now: missing or past their renewal
// time, plus those due soon (within a tenth of their lifetime) so that
// renewals close together share one call.
func (c *cache) due(now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, en := range c.entries {
		id := en.GetSpiffeId()
		if r, ok := c.failed[id]; ok && now.Before(r.at) {
			continue
		}
		at, ok := c.renewAt[id]
		s := c.svids[id]
		if !ok || s == nil {
			ids = append(ids, id)
			continue
		}
		life := s.Certificates[0].NotAfter.Sub(s.Certificates[0].NotBefore)
		if window := time.Duration(float64(life) * c.renewFraction / 10); !now.Before(at.Add(-window)) {
			ids = append(ids, id)
		}
	}
	return ids
}

// nextRenewal is the earliest time an SVID becomes due (or a failure may
// be retried); far in the future when there is nothing to do.
func (c *cache) nextRenewal() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.e.now().Add(time.Hour)
	for _, en := range c.entries {
		id := en.GetSpiffeId()
		at, ok := c.renewAt[id]
		if r, failed := c.failed[id]; failed && (!ok || r.at.After(at)) {
			at, ok = r.at, true
		}
		if !ok {
			return c.e.now()
		}
		if at.Before(next) {
			next = at
		}
	}
	return next
}

// mint requests SVIDs for ids in batches and stores those that verify.
// Failures keep the cached SVID and are retried with backoff.
func (c *cache) mint(ctx context.Context, ids []string) {
	log := c.e.logger()
	cl, err := c.e.dial(ctx, c.a)
	if err != nil {
		c.fail(ids, err)
		return
	}
	defer cl.Close()
	for start := 0; start < len(ids); start += c.batch {
		chunk := ids[start:min(start+c.batch, len(ids))]
		keys := make([]crypto.Signer, len(chunk))
		items := make([]*tier0v1.MintItem, len(chunk))
		for i, id := range chunk {
			at, err := c.attempts.get(spiffeid.RequireFromString(id), c.e.now())
			if err != nil {
				c.fail(chunk, err)
				return
			}
			keys[i] = at.key
			items[i] = &tier0v1.MintItem{Csr: at.csr, IdempotencyKey: at.idem}
			c.mu.Lock()
			if s := c.svids[id]; s != nil {
				items[i].RenewingNotAfter = s.Certificates[0].NotAfter.Unix()
			}
			c.mu.Unlock()
		}
		resp, err := cl.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items})
		if err == nil && len(resp.GetResults()) != len(chunk) {
			err = fmt.Errorf("server returned %d results for %d items", len(resp.GetResults()), len(chunk))
		}
		if err != nil {
			if ctx.Err() == nil {
				log.WarnContext(ctx, "workload SVID renewal failed; serving cached SVIDs", "count", len(chunk), "err", describe(err))
			}
			c.fail(ids[start:], err)
			return
		}
		for i, res := range resp.GetResults() {
			if st := res.GetError(); st == nil || !unknownOutcome(codes.Code(st.GetCode())) {
				c.attempts.answered(chunk[i])
			}
			svid, err := c.parse(chunk[i], keys[i], res)
			if err != nil {
				log.WarnContext(ctx, "workload SVID not issued", "spiffe_id", chunk[i], "err", describe(err))
				c.fail(chunk[i:i+1], err)
				continue
			}
			c.store(svid)
			log.InfoContext(ctx, "workload SVID issued", "spiffe_id", svid.ID, "expires", svid.Certificates[0].NotAfter)
		}
	}
}

func (c *cache) parse(id string, key crypto.Signer, res *tier0v1.MintResult) (*x509svid.SVID, error) {
	if st := res.GetError(); st != nil {
		return nil, fmt.Errorf("%s: %s", codeText(codes.Code(st.GetCode()).String()), st.GetMessage())
	}
	svid, err := client.ParseChain(res.GetChain(), key, c.a.bundle)
	if err != nil {
		return nil, err
	}
	if svid.ID.String() != id {
		return nil, fmt.Errorf("server issued %s, want %s", svid.ID, id)
	}
	return svid, nil
}

// store caches svid and schedules its renewal after renewFraction of its
// remaining lifetime, jittered by +-10%.
func (c *cache) store(svid *x509svid.SVID) {
	now := c.e.now()
	left := svid.Certificates[0].NotAfter.Sub(now)
	wait := time.Duration(float64(left) * c.renewFraction * (0.9 + 0.2*rand.Float64()))
	id := svid.ID.String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.ContainsFunc(c.entries, func(en *tier0v1.Entry) bool { return en.GetSpiffeId() == id }) {
		return // the entry went away while minting
	}
	c.svids[id] = svid
	c.renewAt[id] = now.Add(wait)
	delete(c.failed, id)
	c.notifyLocked()
}

// fail schedules a retry of ids: 1s doubling up to a minute, never past a
// tenth of the remaining lifetime of the cached SVID.
func (c *cache) fail(ids []string, _ error) {
	now := c.e.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		backoff := min(time.Minute, max(time.Second, 2*c.failed[id].backoff))
		wait := backoff
		if s := c.svids[id]; s != nil {
			wait = max(100*time.Millisecond, min(wait, s.Certificates[0].NotAfter.Sub(now)/10))
		}
		c.failed[id] = retry{at: now.Add(wait), backoff: backoff}
	}
}
