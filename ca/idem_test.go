package ca

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca/record"
)

// idemJournal is fakeJournal with an idempotency index.
type idemJournal struct {
	*fakeJournal
	mu    sync.Mutex
	byKey map[uint64]*record.Record
}

func (j *idemJournal) CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	if err := j.Commit(ctx, recs); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, r := range recs {
		if keys[i] != 0 {
			j.byKey[keys[i]] = r
		}
	}
	return nil
}

func (j *idemJournal) Committed(_ context.Context, key uint64) (*record.Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.byKey[key], nil
}

func TestMintBatchIdempotentRetry(t *testing.T) {
	var j *idemJournal
	var now time.Time
	e := newEnv(t, func(c *Config) {
		j = &idemJournal{fakeJournal: c.Journal.(*fakeJournal), byKey: map[uint64]*record.Record{}}
		c.Journal = j
		base := c.Clock()
		now = base
		c.Clock = func() time.Time { return now }
	})
	ctx := context.Background()
	key := []byte("0123456789abcdef-retry-key")
	p256 := newP256(t)
	csr := makeCSR(t, p256, []string{testWLID.String()})
	mint := func(caller spiffeid.ID, req Request) Result {
		t.Helper()
		res, err := e.ca.MintBatch(ctx, caller, []Request{req})
		if err != nil {
			t.Fatalf("MintBatch: %v", err)
		}
		return res[0]
	}
	first := mint(testAgent, Request{CSR: csr, IdemKey: key})
	if first.Err != nil || first.Replayed {
		t.Fatalf("first: err %v, replayed %v", first.Err, first.Replayed)
	}
	again := mint(testAgent, Request{CSR: csr, IdemKey: key})
	if again.Err != nil || !again.Replayed || again.Record.Serial != first.Record.Serial {
		t.Fatalf("retry: err %v, replayed %v, serial %v want %s", again.Err, again.Replayed, again.Record, first.Record.Serial)
	}
	if len(again.Chain) != len(first.Chain) || again.Cert.SerialNumber.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatal("retry chain differs from the committed one")
	}
	if got := len(j.records()); got != 1 {
		t.Fatalf("journal holds %d records after a retry, want 1", got)
	}

	// Anything that differs is a new request: no key, another key, another
	// public key, another SPIFFE ID.
	other := []Request{
		{CSR: csr},
		{CSR: csr, IdemKey: []byte("another-key-0123456789")},
		{CSR: makeCSR(t, newP256(t), []string{testWLID.String()}), IdemKey: key},
		{CSR: makeCSR(t, p256, []string{testWLID2.String()}), IdemKey: key},
	}
	for i, req := range other {
		if r := mint(testAgent, req); r.Err != nil || r.Replayed || r.Record.Serial == first.Record.Serial {
			t.Errorf("request %d: err %v, replayed %v (a different request must be minted anew)", i, r.Err, r.Replayed)
		}
	}
	// Past half its lifetime the SVID is renewed, not replayed.
	now = now.Add(first.Record.NotAfter.Sub(first.Record.NotBefore)/2 + time.Minute)
	if r := mint(testAgent, Request{CSR: csr, IdemKey: key}); r.Err != nil || r.Replayed {
		t.Errorf("after half-life: err %v, replayed %v, want a new SVID", r.Err, r.Replayed)
	}
	// Bad key lengths are refused as bad input.
	for _, k := range [][]byte{[]byte("short"), make([]byte, MaxIdemKey+1)} {
		if r := mint(testAgent, Request{CSR: csr, IdemKey: k}); !errors.Is(r.Err, ErrInvalidCSR) {
			t.Errorf("key of %d bytes: %v, want ErrInvalidCSR", len(k), r.Err)
		}
	}
}

// TestIdemHashBindsEveryField: the hash covers caller, ID, public key and key.
func TestIdemHashBindsEveryField(t *testing.T) {
	base := IdemHash("a", "b", "c", []byte("d"))
	for i, h := range []uint64{
		IdemHash("x", "b", "c", []byte("d")), IdemHash("a", "x", "c", []byte("d")),
		IdemHash("a", "b", "x", []byte("d")), IdemHash("a", "b", "c", []byte("x")),
		IdemHash("a\x00b", "", "c", []byte("d")),
	} {
		if h == base || h == 0 {
			t.Errorf("variant %d hashes like the base (%x)", i, h)
		}
	}
}

// blockingJournal holds each CommitKeyed until release is closed.
type blockingJournal struct {
	*idemJournal
	entered chan struct{}
	release chan struct{}
}

func (j *blockingJournal) CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	j.entered <- struct{}{}
	<-j.release
	return j.idemJournal.CommitKeyed(ctx, recs, keys)
}

// TestRetryDuringCommitWaitsAndReplays: a retry that arrives while the
// first attempt is still committing waits for it and gets its SVID.
func TestRetryDuringCommitWaitsAndReplays(t *testing.T) {
	var j *blockingJournal
	e := newEnv(t, func(c *Config) {
		j = &blockingJournal{idemJournal: &idemJournal{fakeJournal: c.Journal.(*fakeJournal), byKey: map[uint64]*record.Record{}},
			entered: make(chan struct{}, 2), release: make(chan struct{})}
		c.Journal = j
	})
	req := []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()}), IdemKey: []byte("0123456789abcdef")}}
	first := make(chan []Result, 1)
	go func() {
		res, _ := e.ca.MintBatch(context.Background(), testAgent, req)
		first <- res
	}()
	<-j.entered // the first attempt is committing
	second := make(chan []Result, 1)
	go func() {
		res, _ := e.ca.MintBatch(context.Background(), testAgent, req)
		second <- res
	}()
	deadline := time.Now().Add(10 * time.Second)
	for { // until the retry waits for the first attempt (polling)
		if time.Now().After(deadline) {
			t.Fatal("the retry did not wait for the first attempt")
		}
		e.ca.claims.mu.Lock()
		w := e.ca.claims.waiting
		e.ca.claims.mu.Unlock()
		if w == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(j.release)
	a, b := <-first, <-second
	if a[0].Err != nil || b[0].Err != nil || a[0].Record.Serial != b[0].Record.Serial || !b[0].Replayed {
		t.Fatalf("first %+v, retry %+v: want the retry to replay the first's SVID", a[0], b[0])
	}
	if n := len(j.records()); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
	// A key twice in one batch does not wait for itself.
	two := []Request{req[0], req[0]}
	two[0].IdemKey, two[1].IdemKey = []byte("fedcba9876543210"), []byte("fedcba9876543210")
	go func() { <-j.entered; <-j.entered }()
	if res, err := e.ca.MintBatch(context.Background(), testAgent, two); err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("same key twice in a batch: %v %v", res, err)
	}
}
