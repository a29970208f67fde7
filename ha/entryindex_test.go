package ha

import (
	"fmt"
	"testing"
	"time"
)

// TestEntryIndex: entries held once in the per-agent index are found by
// ID, deleted by ID, kept sorted however they arrive, and the uniqueness
// key (agent, SPIFFE ID) and node-selector entries behave as before.
func TestEntryIndex(t *testing.T) {
	s := newState()
	now := time.Unix(1700000000, 0)
	for _, i := range []int{5, 1, 9, 3, 7, 0, 2} {
		s.putEntry(Entry{ID: fmt.Sprintf("id%d", i), Agent: "a", SPIFFEID: fmt.Sprintf("spiffe://td/w%d", i), CreatedAt: now})
	}
	s.putEntry(Entry{ID: "other", Agent: "b", SPIFFEID: "spiffe://td/w1"})
	node := Entry{ID: "n1", SPIFFEID: "spiffe://td/n", NodeSelectors: []string{"k8s:ns:x"}}
	s.putEntry(node)
	es := s.byAgent["a"]
	if len(es) != 7 || cap(es) != 7 {
		t.Fatalf("agent a: %d entries, capacity %d; want 7, 7", len(es), cap(es))
	}
	for i := 1; i < len(es); i++ {
		if compareEntries(es[i-1], es[i]) >= 0 {
			t.Fatalf("index out of order at %d: %s, %s", i, es[i-1].SPIFFEID, es[i].SPIFFEID)
		}
	}
	if e, ok := s.entry("id9"); !ok || e.SPIFFEID != "spiffe://td/w9" || !e.CreatedAt.Equal(now) {
		t.Fatalf("entry id9 = %+v, %v", e, ok)
	}
	if e, ok := s.entry("n1"); !ok || e.SPIFFEID != node.SPIFFEID {
		t.Fatalf("node entry n1 = %+v, %v", e, ok)
	}
	if _, ok := s.entry("nope"); ok {
		t.Fatal("unknown id found")
	}
	if !s.hasEntryKey(Entry{Agent: "a", SPIFFEID: "spiffe://td/w3"}) || s.hasEntryKey(Entry{Agent: "a", SPIFFEID: "spiffe://td/w4"}) ||
		!s.hasEntryKey(Entry{SPIFFEID: "spiffe://td/n", NodeSelectors: []string{"k8s:ns:x"}}) {
		t.Fatal("uniqueness keys wrong")
	}
	old := s.byAgent["a"]
	e3, _ := s.entry("id3")
	s.removeEntry(e3)
	if _, ok := s.entry("id3"); ok || len(s.byAgent["a"]) != 6 || len(old) != 7 || old[3].ID != "id3" {
		t.Fatal("remove: entry still found, or the old index (held by readers) was changed in place")
	}
	if got := len(s.allEntries()); got != 8 {
		t.Fatalf("allEntries: %d, want 8", got)
	}
	s.removeEntry(node)
	if _, ok := s.entry("n1"); ok || s.hasEntryKey(node) {
		t.Fatal("node entry still there after remove")
	}
}
