package record

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// Admin event records (event.go) have their own encoding; these vectors
// pin it as golden_test.go pins the certificate records' (computed once
// from the implementation, written as literals; never change them).
var eventGoldens = []golden{
	{
		name: "event, every field set",
		rec: Record{
			Seq: 43, Serial: "9c2f4e1a7b3d5c6e8f00112233445566", Action: "entry.create",
			SPIFFEID: "spiffe://example.org/ns/prod/sa/web", AgentID: "spiffe://example.org/tier0/admin",
			NodeID: "n1", CommittedAt: at("2025-01-02T03:04:06.5Z"),
			Detail: []byte(`{"id":"e-1","agent":"spiffe://example.org/tier0/agent/host-1","ttl":"1h0m0s"}`),
		},
		prev:      prevHash,
		canonical: "02000000000000002b0000002039633266346531613762336435633665386630303131323233333434353536360000000c656e7472792e637265617465000000237370696666653a2f2f6578616d706c652e6f72672f6e732f70726f642f73612f776562000000207370696666653a2f2f6578616d706c652e6f72672f74696572302f61646d696e000000026e3100062ab06a4ff6a00000004d7b226964223a22652d31222c226167656e74223a227370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f686f73742d31222c2274746c223a223168306d3073227d",
		hash:      "c22fe687cadb933ec9b66f0345b2cda907d57afd24bbc0a38d2c22fea7b50b12",
	},
	{
		name: "event at genesis, no node, no detail, zero commit time",
		rec: Record{
			Seq: 1, Serial: "1", Action: "token.create",
			SPIFFEID: "spiffe://example.org/tier0/agent/a", AgentID: "spiffe://example.org/tier0/admin",
		},
		prev:      Genesis,
		canonical: "02000000000000000100000001310000000c746f6b656e2e637265617465000000227370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f61000000207370696666653a2f2f6578616d706c652e6f72672f74696572302f61646d696e00000000ff23400100d4400000000000",
		hash:      "783279114c058a906f27f87ec2fbd950f70c77e923dde6eaf28d64222c918d51",
	},
}

func TestEventCanonicalGolden(t *testing.T) {
	for _, g := range eventGoldens {
		t.Run(g.name, func(t *testing.T) {
			if !g.rec.IsEvent() || g.rec.Kind() != KindAdmin {
				t.Fatalf("not an event: kind %s", g.rec.Kind())
			}
			if h := hex.EncodeToString(g.rec.Canonical()); h != g.canonical {
				t.Errorf("event canonical bytes changed:\n got %s\nwant %s", h, g.canonical)
			}
			r := g.rec
			r.Seal(g.prev)
			if hex.EncodeToString(r.Hash) != g.hash || r.Verify(g.prev) != nil {
				t.Errorf("event chain hash changed: got %x, want %s", r.Hash, g.hash)
			}
		})
	}
}

// TestEventEveryFieldCounts: every hashed event field changes the hash;
// the fields an event does not hash are the ones verify compares instead
// (NotBefore/NotAfter with CommittedAt) or must be empty (CheckEvent).
func TestEventEveryFieldCounts(t *testing.T) {
	base := eventGoldens[0]
	want := hex.EncodeToString(ChainHash(base.prev, &base.rec))
	edits := map[string]func(r *Record){
		"Seq":         func(r *Record) { r.Seq++ },
		"Serial":      func(r *Record) { r.Serial += "0" },
		"Action":      func(r *Record) { r.Action = "entry.delete" },
		"SPIFFEID":    func(r *Record) { r.SPIFFEID += "x" },
		"AgentID":     func(r *Record) { r.AgentID += "x" },
		"NodeID":      func(r *Record) { r.NodeID = "n2" },
		"CommittedAt": func(r *Record) { r.CommittedAt = r.CommittedAt.Add(time.Microsecond) },
		"Detail":      func(r *Record) { r.Detail = []byte(strings.Replace(string(r.Detail), "1h", "2h", 1)) },
		"Action/SPIFFEID boundary": func(r *Record) {
			r.Action, r.SPIFFEID = r.Action+"s", r.SPIFFEID[1:]
		},
	}
	for name, edit := range edits {
		r := base.rec
		edit(&r)
		if hex.EncodeToString(ChainHash(base.prev, &r)) == want {
			t.Errorf("%s: editing it left the hash unchanged", name)
		}
	}
	// An event never encodes like a certificate record.
	c := base.rec
	c.Action = ""
	if c.Canonical()[0] == base.rec.Canonical()[0] {
		t.Error("event and certificate records share a leading byte")
	}
}

func TestCheckEvent(t *testing.T) {
	ok := eventGoldens[0].rec
	if err := CheckEvent(&ok); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(r *Record){
		"no action":     func(r *Record) { r.Action = "" },
		"no id":         func(r *Record) { r.Serial = "" },
		"no actor":      func(r *Record) { r.AgentID = "" },
		"no subject":    func(r *Record) { r.SPIFFEID = "" },
		"certificate":   func(r *Record) { r.CertDER = []byte{0x30, 0} },
		"issuer":        func(r *Record) { r.IssuerKeyID = "ab" },
		"detail array":  func(r *Record) { r.Detail = []byte(`[1]`) },
		"detail broken": func(r *Record) { r.Detail = []byte(`{"a":`) },
		"detail big":    func(r *Record) { r.Detail = []byte(`{"a":"` + strings.Repeat("x", MaxEventDetail) + `"}`) },
		"long action":   func(r *Record) { r.Action = strings.Repeat("a", 65) },
	} {
		r := ok
		edit(&r)
		if CheckEvent(&r) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
