package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// Run runs the conformance suite. open returns a fresh, empty store and
// registers its cleanup with t.
func Run(t *testing.T, open func(t *testing.T) storage.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Store)
	}{
		{"EmptyLastSeq", testEmpty},
		{"AppendLastSeq", testAppend},
		{"IdempotentOverlap", testOverlap},
		{"Gap", testGap},
		{"Conflict", testConflict},
		{"Query", testQuery},
		{"QueryBadFilter", testBadFilter},
		{"SerialSpellingsAndKind", testSerials},
		{"Range", testRange},
		{"RoundTrip", testRoundTrip},
		{"VerifyGoodChain", testVerify},
		{"ConcurrentReaders", testConcurrent},
		{"Lineage", testLineage},
		{"LineageRace", testLineageRace},
		{"LineageBase", testLineageBase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// Append appends recs in batches of batch records, failing t on error.
func Append(t testing.TB, s storage.Store, recs []*record.Record, batch int) {
	t.Helper()
	for i := 0; i < len(recs); i += batch {
		if err := s.Append(context.Background(), recs[i:min(i+batch, len(recs))]); err != nil {
			t.Fatalf("Append(%d..): %v", recs[i].Seq, err)
		}
	}
}

// Collect returns Range(from, to).
func Collect(t testing.TB, s storage.Store, from, to uint64) []*record.Record {
	t.Helper()
	var out []*record.Record
	if err := s.Range(context.Background(), from, to, func(r *record.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Range(%d, %d): %v", from, to, err)
	}
	return out
}

func lastSeq(t *testing.T, s storage.Store) uint64 {
	t.Helper()
	n, err := s.LastSeq(context.Background())
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return n
}

func seqs(recs []*record.Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func span(from, to uint64) []uint64 { // from..to, descending when from > to
	var out []uint64
	for i := from; ; {
		out = append(out, i)
		if i == to {
			return out
		}
		if from < to {
			i++
		} else {
			i--
		}
	}
}

func testEmpty(t *testing.T, s storage.Store) {
	if n := lastSeq(t, s); n != 0 {
		t.Fatalf("LastSeq of an empty store = %d, want 0", n)
	}
	if got := Collect(t, s, 1, 0); len(got) != 0 {
		t.Fatalf("Range of an empty store returned %d records", len(got))
	}
	if err := s.Append(context.Background(), nil); err != nil {
		t.Fatalf("Append(nil) = %v, want nil", err)
	}
}

func testAppend(t *testing.T, s storage.Store) {
	c := Chain("a", 1, 20, record.Genesis)
	Append(t, s, c[:10], 10)
	if n := lastSeq(t, s); n != 10 {
		t.Fatalf("LastSeq = %d, want 10", n)
	}
	Append(t, s, c[10:], 3)
	if n := lastSeq(t, s); n != 20 {
		t.Fatalf("LastSeq = %d, want 20", n)
	}
}

func testOverlap(t *testing.T, s storage.Store) {
	c := Chain("a", 1, 15, record.Genesis)
	Append(t, s, c[:10], 10)
	Append(t, s, c[4:15], 20) // 5..15 overlaps 5..10
	Append(t, s, c, 20)       // all already present
	Append(t, s, c[2:3], 1)   // one old record
	if n := lastSeq(t, s); n != 15 {
		t.Fatalf("LastSeq = %d, want 15", n)
	}
	if got := seqs(Collect(t, s, 1, 0)); !slices.Equal(got, span(1, 15)) {
		t.Fatalf("Range after re-appends = %v, want 1..15 once each", got)
	}
}

func testGap(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := Chain("a", 1, 13, record.Genesis)
	if err := s.Append(ctx, c[1:3]); !errors.Is(err, storage.ErrGap) {
		t.Fatalf("Append(2..3) to an empty store = %v, want ErrGap", err)
	}
	Append(t, s, c[:10], 10)
	err := s.Append(ctx, c[11:13])
	if !errors.Is(err, storage.ErrGap) {
		t.Fatalf("Append(12..13) after 10 = %v, want ErrGap", err)
	}
	if !strings.Contains(err.Error(), "first new seq is 12 but the store ends at 10") {
		t.Errorf("ErrGap message %q does not name both seqs", err)
	}
	if err := s.Append(ctx, []*record.Record{c[10], c[12]}); !errors.Is(err, storage.ErrGap) {
		t.Fatalf("Append(11, 13) = %v, want ErrGap", err)
	}
	if n := lastSeq(t, s); n != 10 {
		t.Fatalf("LastSeq after failed appends = %d, want 10", n)
	}
}

func testConflict(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := Chain("a", 1, 12, record.Genesis)
	Append(t, s, c[:10], 10)

	other := Chain("b", 1, 12, record.Genesis) // different serials and hashes at every seq
	batch := slices.Clone(c[4:11])             // 5..11, 11 new
	batch[2] = other[6]                        // seq 7 differs
	err := s.Append(ctx, batch)
	if !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), "seq 7") {
		t.Fatalf("Append with a different seq 7 = %v, want ErrConflict naming seq 7", err)
	}
	// Same serial, different contents (hash) at an existing seq.
	mod := *c[7]
	mod.SPIFFEID = "spiffe://example.org/other"
	mod.Seal(c[6].Hash)
	if err := s.Append(ctx, []*record.Record{&mod}); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("Append with modified seq 8 = %v, want ErrConflict", err)
	}
	// A new seq reusing a stored serial; the batch is atomic.
	dup := *c[11]
	dup.Serial = c[2].Serial
	dup.Seal(c[10].Hash)
	err = s.Append(ctx, []*record.Record{c[10], &dup})
	if !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), "seq 12") {
		t.Fatalf("Append of seq 12 reusing the serial of seq 3 = %v, want ErrConflict naming seq 12", err)
	}
	if n := lastSeq(t, s); n != 10 {
		t.Fatalf("LastSeq after failed appends = %d, want 10 (nothing written)", n)
	}
}

func testQuery(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := Chain("q", 1, 100, record.Genesis)
	Append(t, s, c, 40)
	match := func(pred func(*record.Record) bool) []uint64 {
		var out []uint64
		for i := len(c) - 1; i >= 0; i-- {
			if pred(c[i]) {
				out = append(out, c[i].Seq)
			}
		}
		return out
	}
	since, until := c[29].NotBefore, c[59].NotBefore
	tests := []struct {
		name string
		f    storage.Filter
		want []uint64
	}{
		{"all", storage.Filter{}, span(100, 1)},
		{"spiffe_id", storage.Filter{SPIFFEID: SPIFFEIDs[2]}, match(func(r *record.Record) bool { return r.SPIFFEID == SPIFFEIDs[2] })},
		{"agent_id", storage.Filter{AgentID: AgentIDs[1]}, match(func(r *record.Record) bool { return r.AgentID == AgentIDs[1] })},
		{"serial", storage.Filter{Serial: c[41].Serial}, []uint64{42}},
		{"serial upper case", storage.Filter{Serial: strings.ToUpper(c[41].Serial)}, []uint64{42}},
		{"serial unknown", storage.Filter{Serial: "deadbeef"}, nil},
		{"issuer_key_id", storage.Filter{IssuerKeyID: strings.ToUpper(IssuerKeyIDs[1])}, match(func(r *record.Record) bool { return r.IssuerKeyID == IssuerKeyIDs[1] })},
		{"since inclusive", storage.Filter{Since: since}, span(100, 30)},
		{"until exclusive", storage.Filter{Until: until}, span(59, 1)},
		{"since until", storage.Filter{Since: since, Until: until}, span(59, 30)},
		{"since == until", storage.Filter{Since: since, Until: since}, nil},
		{"committed since/until", storage.Filter{CommittedSince: c[29].CommittedAt, CommittedUntil: c[59].CommittedAt}, span(59, 30)},
		{"committed since, exact microsecond", storage.Filter{CommittedSince: c[99].CommittedAt}, []uint64{100}},
		{"since in another zone", storage.Filter{Since: since.In(time.FixedZone("X", 5*3600))}, span(100, 30)},
		{"huge range", storage.Filter{Since: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Until: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)}, span(100, 1)},
		{"limit", storage.Filter{Limit: 7}, span(100, 94)},
		{"max limit", storage.Filter{Limit: storage.MaxLimit}, span(100, 1)},
		{"combined", storage.Filter{SPIFFEID: SPIFFEIDs[1], AgentID: AgentIDs[2], Since: since, Limit: 2},
			match(func(r *record.Record) bool {
				return r.SPIFFEID == SPIFFEIDs[1] && r.AgentID == AgentIDs[2] && !r.NotBefore.Before(since)
			})[:2]},
	}
	for _, tc := range tests {
		got, err := s.Query(ctx, tc.f)
		if err != nil {
			t.Errorf("%s: Query: %v", tc.name, err)
			continue
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Errorf("%s: Query = %v, want %v", tc.name, seqs(got), tc.want)
		}
	}
}

func testBadFilter(t *testing.T, s storage.Store) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		f    storage.Filter
		want string
	}{
		{storage.Filter{Limit: -1}, "storage: bad filter: limit -1 is negative"},
		{storage.Filter{Limit: 10001}, "storage: bad filter: limit 10001 is above the maximum 10000"},
		{storage.Filter{Serial: "12xz"}, `storage: bad filter: serial: not a serial number: "12xz" is not hex (write decimal as dec:123)`},
		{storage.Filter{IssuerKeyID: "' OR 1=1 --"}, `storage: bad filter: issuer_key_id "' OR 1=1 --" is not hex`},
		{storage.Filter{Since: now, Until: now.Add(-time.Microsecond)}, "storage: bad filter: until 2029-12-31T23:59:59.999999Z is before since 2030-01-01T00:00:00Z"},
		{storage.Filter{Until: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "storage: bad filter: until 10000-01-01T00:00:00Z is outside years 1-9999"},
		{storage.Filter{SPIFFEID: "example.org/w"}, `storage: bad filter: spiffe_id "example.org/w" is not a SPIFFE ID: `},
		{storage.Filter{AgentID: "spiffe://EXAMPLE.org/a"}, `storage: bad filter: agent_id "spiffe://EXAMPLE.org/a" is not a SPIFFE ID: `},
		{storage.Filter{SPIFFEID: "spiffe://example.org/" + strings.Repeat("a", 2028)}, "storage: bad filter: spiffe_id is 2049 bytes, above the limit of 2048 bytes"},
	}
	for _, tc := range tests {
		_, err := s.Query(context.Background(), tc.f)
		if !errors.Is(err, storage.ErrBadFilter) {
			t.Errorf("Query(%+v) = %v, want ErrBadFilter", tc.f, err)
			continue
		}
		if got := err.Error(); got != tc.want && !(strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(got, tc.want)) {
			t.Errorf("Query(%+v) error\n got %q\nwant %q", tc.f, got, tc.want)
		}
	}
}

func testRange(t *testing.T, s storage.Store) {
	Append(t, s, Chain("r", 1, 50, record.Genesis), 50)
	for _, tc := range []struct {
		from, to uint64
		want     []uint64
	}{
		{10, 20, span(10, 20)},
		{45, 0, span(45, 50)},
		{0, 3, span(1, 3)},
		{50, 50, []uint64{50}},
		{48, 99, span(48, 50)},
		{60, 0, nil},
	} {
		if got := seqs(Collect(t, s, tc.from, tc.to)); !slices.Equal(got, tc.want) {
			t.Errorf("Range(%d, %d) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	stop := errors.New("stop")
	var got []uint64
	err := s.Range(context.Background(), 10, 0, func(r *record.Record) error {
		got = append(got, r.Seq)
		if r.Seq == 13 {
			return stop
		}
		return nil
	})
	if err != stop { //nolint:errorlint // the contract is fn's error returned as is
		t.Fatalf("Range with fn failing at 13 = %v, want fn's error unwrapped", err)
	}
	if !slices.Equal(got, span(10, 13)) {
		t.Fatalf("Range with fn failing at 13 visited %v, want 10..13", got)
	}
}

// EqualRecord reports the first field where got differs from want.
func EqualRecord(want, got *record.Record) error {
	type field struct {
		name string
		w, g any
	}
	fs := []field{{"Seq", want.Seq, got.Seq}, {"Serial", want.Serial, got.Serial}, {"SPIFFEID", want.SPIFFEID, got.SPIFFEID},
		{"AgentID", want.AgentID, got.AgentID}, {"IssuerKeyID", want.IssuerKeyID, got.IssuerKeyID},
		{"PublicKeySHA256", want.PublicKeySHA256, got.PublicKeySHA256}, {"NodeID", want.NodeID, got.NodeID}}
	for _, f := range fs {
		if f.w != f.g {
			return fmt.Errorf("seq %d: %s = %v, want %v", want.Seq, f.name, f.g, f.w)
		}
	}
	for _, f := range []struct {
		name string
		w, g time.Time
	}{{"NotBefore", want.NotBefore, got.NotBefore}, {"NotAfter", want.NotAfter, got.NotAfter}, {"CommittedAt", want.CommittedAt, got.CommittedAt}} {
		if !f.g.Equal(f.w) || f.g.Location() != time.UTC {
			return fmt.Errorf("seq %d: %s = %v, want %v (UTC)", want.Seq, f.name, f.g, f.w)
		}
	}
	for _, f := range []struct {
		name string
		w, g []byte
	}{{"CertDER", want.CertDER, got.CertDER}, {"PrevHash", want.PrevHash, got.PrevHash}, {"Hash", want.Hash, got.Hash}} {
		if !bytes.Equal(f.g, f.w) {
			return fmt.Errorf("seq %d: %s = %x, want %x", want.Seq, f.name, f.g, f.w)
		}
	}
	return nil
}

func testRoundTrip(t *testing.T, s storage.Store) {
	c := Chain("rt", 1, 30, record.Genesis)
	Append(t, s, c, 30)
	got := Collect(t, s, 1, 0)
	if len(got) != len(c) {
		t.Fatalf("Range returned %d records, want %d", len(got), len(c))
	}
	prev := record.Genesis
	for i, r := range got {
		if err := EqualRecord(c[i], r); err != nil {
			t.Fatalf("Range: %v", err)
		}
		if err := r.Verify(prev); err != nil {
			t.Fatalf("chain after round trip: %v", err)
		}
		prev = r.Hash
	}
	q, err := s.Query(context.Background(), storage.Filter{Serial: c[16].Serial})
	if err != nil || len(q) != 1 {
		t.Fatalf("Query by serial = %d records, %v", len(q), err)
	}
	if err := EqualRecord(c[16], q[0]); err != nil {
		t.Fatalf("Query: %v", err)
	}
}

func testVerify(t *testing.T, s storage.Store) {
	ctx := context.Background()
	c := Chain("v", 1, 1200, record.Genesis)
	Append(t, s, c, 250)
	check := func(from, to uint64, want storage.VerifyResult) {
		t.Helper()
		got, err := storage.Verify(ctx, s, from, to)
		if err != nil {
			t.Fatalf("Verify(%d, %d): %v", from, to, err)
		}
		if got.Checked != want.Checked || got.FirstBad != want.FirstBad || got.Problem != want.Problem || !bytes.Equal(got.Head, want.Head) {
			t.Fatalf("Verify(%d, %d) = %+v, want %+v", from, to, got, want)
		}
	}
	check(1, 0, storage.VerifyResult{Checked: 1200, Head: c[1199].Hash})
	check(500, 700, storage.VerifyResult{Checked: 201, Head: c[699].Hash})
	check(1200, 1200, storage.VerifyResult{Checked: 1, Head: c[1199].Hash})
	check(1195, 1210, storage.VerifyResult{Checked: 6, Head: c[1199].Hash, FirstBad: 1201, Problem: storage.ProblemMissing})
	if _, err := storage.Verify(ctx, s, 10, 5); !errors.Is(err, storage.ErrBadFilter) {
		t.Fatalf("Verify(10, 5) = %v, want ErrBadFilter", err)
	}
	got, err := s.Query(ctx, storage.Filter{})
	if err != nil || len(got) != storage.DefaultLimit || got[0].Seq != 1200 {
		t.Fatalf("Query with the default limit = %d records, %v; want %d newest", len(got), err, storage.DefaultLimit)
	}
}

func testConcurrent(t *testing.T, s storage.Store) {
	ctx := context.Background()
	const batches, size, readers = 40, 25, 3
	c := Chain("c", 1, batches*size, record.Genesis)
	done := make(chan struct{})
	errs := make(chan error, readers+1)
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seen uint64
			for finished := false; !finished; {
				select {
				case <-done:
					finished = true // one more pass after the writer is done
				default:
				}
				n, err := s.LastSeq(ctx)
				if err != nil || n < seen || n%size != 0 {
					errs <- fmt.Errorf("LastSeq = %d, %w (previously %d; batches are atomic)", n, err, seen)
					return
				}
				seen = n
				want := uint64(1)
				if err := s.Range(ctx, 1, 0, func(r *record.Record) error {
					if r.Seq != want {
						return fmt.Errorf("range: seq %d, want %d", r.Seq, want)
					}
					want++
					return nil
				}); err != nil {
					errs <- err
					return
				}
				if want-1 < n {
					errs <- fmt.Errorf("range saw %d records after LastSeq %d", want-1, n)
					return
				}
				q, err := s.Query(ctx, storage.Filter{SPIFFEID: SPIFFEIDs[0], Limit: 5})
				if err != nil || !slices.IsSortedFunc(q, func(a, b *record.Record) int { return int(b.Seq) - int(a.Seq) }) {
					errs <- fmt.Errorf("query = %v, %w", seqs(q), err)
					return
				}
			}
		}()
	}
	for i := 0; i < batches; i++ {
		if err := s.Append(ctx, c[i*size:(i+1)*size]); err != nil {
			errs <- fmt.Errorf("Append batch %d: %w", i, err)
			break
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := lastSeq(t, s); n != batches*size {
		t.Fatalf("LastSeq = %d, want %d", n, batches*size)
	}
}
