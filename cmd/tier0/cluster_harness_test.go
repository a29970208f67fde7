package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// testCluster is a tier0 cluster of separate processes on loopback with
// fixed ports (so that restarts keep their addresses) and one shared
// SQLite record store.
type testCluster struct {
	t     *testing.T
	nodes []*proc
	apis  []string
	store string
}

func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	root := t.TempDir()
	c := &testCluster{t: t, store: filepath.Join(root, "records.db")}
	args := make([][]string, n)
	for i := range n {
		api := freeAddr(t)
		c.apis = append(c.apis, api)
		args[i] = append([]string{"--node-id", nodeName(i), "--raft-addr", freeAddr(t), "--listen", api,
			"--http", freeAddr(t), "--store", "sqlite:" + c.store}, extra...)
	}
	dir := func(i int) string { return filepath.Join(root, nodeName(i)) }
	first := startServer(t, dir(0), args[0]...)
	c.nodes = append(c.nodes, first)
	for i := 1; i < n; i++ {
		token := strings.TrimSpace(must(first.cli("token", "create", "--node", nodeName(i))))
		key := must(os.ReadFile(filepath.Join(dir(0), "ca", "root.key")))
		if err := os.MkdirAll(filepath.Join(dir(i), "ca"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir(i), "ca", "root.key"), key, 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, startServer(t, dir(i), append(args[i],
			"--join", c.apis[0], "--join-token", token, "--bundle", filepath.Join(dir(0), "bundle.pem"))...))
	}
	return c
}

func nodeName(i int) string { return "node" + string(rune('1'+i)) }

// leader returns the index of the leader as seen by a live node's /readyz
// (only the nodes in among, if given).
func (c *testCluster) leader(among ...int) int {
	c.t.Helper()
	var idx = -1
	pollUntil(c.t, 60*time.Second, func() bool {
		for j, p := range c.nodes {
			if p.exitedNow() || (len(among) > 0 && !slices.Contains(among, j)) {
				continue
			}
			id := readyLeader(p)
			for i := range c.nodes {
				if nodeName(i) == id && !c.nodes[i].exitedNow() {
					idx = i
					return true
				}
			}
		}
		return false
	})
	return idx
}

func readyLeader(p *proc) string {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get("http://" + p.info.HTTP + "/readyz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	id, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "ok: leader ")
	if !ok {
		return ""
	}
	return id
}

// agent bootstraps agent name (granted id) and returns a client that fails
// over between addrs (default: every node).
func (c *testCluster) agent(name, id string, addrs ...string) *client.Client {
	c.t.Helper()
	if len(addrs) == 0 {
		addrs = c.apis
	}
	return c.client(c.agentSVID(name, id, addrs), addrs)
}

// agentSVID bootstraps agent name (granted id) through addrs.
func (c *testCluster) agentSVID(name, id string, addrs []string) *x509svid.SVID {
	c.t.Helper()
	p := c.nodes[c.leader()]
	token := strings.TrimSpace(must(p.cli("token", "create", "--agent", name)))
	must(p.cli("entry", "create", "--agent", name, "--spiffe-id", id))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := client.Bootstrap(ctx, addrs, p.td(), p.bundle(), token)
	if err != nil {
		c.t.Fatalf("bootstrap %s: %v", name, err)
	}
	return svid
}

func (c *testCluster) client(svid *x509svid.SVID, addrs []string) *client.Client {
	c.t.Helper()
	p := c.nodes[0]
	cl, err := client.New(context.Background(), client.Config{Addrs: addrs, TrustDomain: p.td(), Bundle: p.bundle(), SVID: client.NewRotatingSVID(svid), MaxAttempts: 3 * len(addrs)})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// issuer mints continuously from several goroutines and remembers every
// SVID a client received (verified against the bundle).
type issuer struct {
	t        *testing.T
	bundle   *x509bundle.Bundle
	mu       sync.Mutex
	received map[string]time.Time // serial -> when received
	dups     int
	count    atomic.Int64
	failures atomic.Int64
	codes    sync.Map // codes.Code -> *atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startIssuing(t *testing.T, cl *client.Client, bundle *x509bundle.Bundle, id string, workers int) *issuer {
	ctx, cancel := context.WithCancel(context.Background())
	is := &issuer{t: t, bundle: bundle, received: map[string]time.Time{}, cancel: cancel}
	for range workers {
		is.wg.Add(1)
		go func() {
			defer is.wg.Done()
			csr := csrFor(t, p256(t), []string{id}, nil, nil)
			for ctx.Err() == nil {
				is.mintOnce(ctx, cl, csr)
			}
		}()
	}
	t.Cleanup(is.stop)
	return is
}

func (is *issuer) mintOnce(ctx context.Context, cl *client.Client, csr []byte) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// An idempotency key per item: the client's retries of this call
	// (Unavailable, failover) get what an earlier attempt committed.
	keys := [2][]byte{make([]byte, 16), make([]byte, 16)}
	_, _ = rand.Read(keys[0])
	_, _ = rand.Read(keys[1])
	resp, err := cl.Agent().MintX509SVIDs(cctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr, IdempotencyKey: keys[0]}, {Csr: csr, IdempotencyKey: keys[1]}}})
	if err != nil {
		if ctx.Err() == nil {
			is.fail(status.Code(err))
			time.Sleep(20 * time.Millisecond) // do not spin while nothing answers
		}
		return
	}
	for _, r := range resp.GetResults() {
		if r.GetError() != nil {
			is.fail(codes.Code(r.GetError().GetCode()))
			continue
		}
		var certs []*x509.Certificate
		for _, der := range r.GetChain() {
			crt, err := x509.ParseCertificate(der)
			if err != nil {
				is.t.Error(err)
				return
			}
			certs = append(certs, crt)
		}
		if _, _, err := x509svid.Verify(certs, is.bundle); err != nil {
			is.t.Errorf("received chain does not verify: %v", err)
		}
		s := certs[0].SerialNumber.Text(16)
		is.mu.Lock()
		if _, ok := is.received[s]; ok {
			is.dups++
		}
		is.received[s] = time.Now()
		is.mu.Unlock()
		is.count.Add(1)
	}
}

func (is *issuer) fail(c codes.Code) {
	is.failures.Add(1)
	v, _ := is.codes.LoadOrStore(c, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

func (is *issuer) stop() {
	is.cancel()
	is.wg.Wait()
}

// firstAfter is the earliest receipt time after t0.
func (is *issuer) firstAfter(t0 time.Time) time.Time {
	is.mu.Lock()
	defer is.mu.Unlock()
	var first time.Time
	for _, at := range is.received {
		if at.After(t0) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

func (is *issuer) codeSummary() map[string]int64 {
	out := map[string]int64{}
	is.codes.Range(func(k, v any) bool {
		out[k.(codes.Code).String()] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// checkRecords waits until every received SVID is in the shared record
// store, then checks each serial occurs once and the chain verifies.
func (c *testCluster) checkRecords(is *issuer) {
	c.t.Helper()
	if is.dups > 0 {
		c.t.Fatalf("%d serials were received twice", is.dups)
	}
	store, err := storage.Open(context.Background(), "sqlite:"+c.store)
	if err != nil {
		c.t.Fatal(err)
	}
	defer store.Close()
	var last uint64
	missing := 0
	pollUntil(c.t, 90*time.Second, func() bool {
		seen := map[string]int{}
		last = 0
		err := store.Range(context.Background(), 1, 0, func(r *record.Record) error {
			seen[r.Serial]++
			last = r.Seq
			return nil
		})
		if err != nil {
			return false
		}
		for s, k := range seen {
			if k > 1 {
				c.t.Fatalf("serial %s has %d records", s, k)
			}
		}
		missing = 0
		is.mu.Lock()
		for s := range is.received {
			if seen[s] == 0 {
				missing++
			}
		}
		is.mu.Unlock()
		return missing == 0
	})
	res, err := storage.Verify(context.Background(), store, 1, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	// The store may have grown since the poll (exports of late commits):
	// the whole chain verifies and covers at least what we saw.
	if !res.OK() || res.Checked < last {
		c.t.Fatalf("chain verify: %+v (last seq %d)", res, last)
	}
	c.t.Logf("record store: %d records, chain verifies; %d SVIDs received, all recorded once", last, len(is.received))
}

func (p *proc) signal(s syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}
