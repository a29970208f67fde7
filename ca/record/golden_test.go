package record

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// The golden vectors pin the canonical encoding and the chain hash: the
// journal (ha), both record stores and `tier0 audit verify` of every
// backup ever taken depend on them. They were computed once from the
// implementation and written here as literals; a change that makes this
// test fail is a record format change and needs a Version bump and a
// migration story, never a new vector.

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func at(s string) time.Time {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return ts
}

// prevHash is an arbitrary non-genesis link: SHA-256("tier0 golden prev").
var prevHash = func() []byte { h := sha256.Sum256([]byte("tier0 golden prev")); return h[:] }()

type golden struct {
	name      string
	rec       Record
	prev      []byte
	canonical string // hex
	hash      string // hex of ChainHash(prev, rec)
}

var goldens = []golden{
	{
		name: "every field set",
		rec: Record{
			Seq: 42, Serial: "5f3a9c0e1d2b4a6879ab01cd23ef4567",
			SPIFFEID: "spiffe://example.org/ns/prod/sa/web", AgentID: "spiffe://example.org/tier0/agent/host-1",
			NotBefore: at("2025-01-02T03:04:05Z"), NotAfter: at("2025-01-02T04:04:05Z"),
			IssuerKeyID:     "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567",
			PublicKeySHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			NodeID:          "n1", CommittedAt: at("2025-01-02T03:04:05.123456Z"),
			CertDER: []byte{0x30, 0x82, 0x01, 0x0a, 0x02, 0x01, 0x00, 0xff},
		},
		prev:      prevHash,
		canonical: "01000000000000002a000000203566336139633065316432623461363837396162303163643233656634353637000000237370696666653a2f2f6578616d706c652e6f72672f6e732f70726f642f73612f776562000000277370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f686f73742d3100062ab06a39134000062ab140ccb74000000028306131623263336434653566363037313832393361346235633664376538663930313233343536370000004039663836643038313838346337643635396132666561613063353561643031356133626634663162326230623832326364313564366331356230663030613038000000026e3100062ab06a3af580000000083082010a020100ff",
		hash:      "e52e87df597431272fe5699f65eb473fa573c078ea1696dcdf1473437c30306f",
	},
	{
		name: "genesis link, optional fields empty (CA-internal issuance, no node, no DER, zero commit time)",
		rec: Record{
			Seq: 1, Serial: "1", SPIFFEID: "spiffe://example.org/tier0/node/n1",
			NotBefore: at("2025-06-30T23:59:59Z"), NotAfter: at("2025-07-01T00:59:59Z"),
			IssuerKeyID: "00", PublicKeySHA256: "",
		},
		prev:      Genesis,
		canonical: "0100000000000000010000000131000000227370696666653a2f2f6578616d706c652e6f72672f74696572302f6e6f64652f6e3100000000000638d2d343fdc0000638d3a9d7a1c00000000230300000000000000000ff23400100d4400000000000",
		hash:      "7529648fdd09556f2416b86a2db30a9af2b5875ca696df08b6c8fedd1038a790",
	},
	{
		name: "JWT-SVID (issuer key id jwt:KID, token hash, no certificate)",
		rec: Record{
			Seq: 7, Serial: "c0ffee00c0ffee00c0ffee00c0ffee00",
			SPIFFEID: "spiffe://example.org/billing/api", AgentID: "spiffe://example.org/tier0/agent/a1",
			NotBefore: at("2025-03-04T05:06:07Z"), NotAfter: at("2025-03-04T05:11:07Z"),
			IssuerKeyID:     "jwt:3Xq1bK9z",
			PublicKeySHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			NodeID:          "node-2", CommittedAt: at("2025-03-04T05:06:07.000001Z"),
		},
		prev:      prevHash,
		canonical: "010000000000000007000000206330666665653030633066666565303063306666656530306330666665653030000000207370696666653a2f2f6578616d706c652e6f72672f62696c6c696e672f617069000000237370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f613100062f7d3af7cdc000062f7d4cd970c00000000c6a77743a33587131624b397a0000004065336230633434323938666331633134396166626634633839393666623932343237616534316534363439623933346361343935393931623738353262383535000000066e6f64652d3200062f7d3af7cdc100000000",
		hash:      "36543b89c39954a6df15bb7946e07544b9b7c244adccc14b1539ccd4e3c937f7",
	},
	{
		name: "unicode in the IDs (strings are their UTF-8 bytes, length in bytes)",
		rec: Record{
			Seq: 1 << 40, Serial: "ff",
			SPIFFEID: "spiffe://example.org/caf\u00e9/\u2603", AgentID: "spiffe://example.org/tier0/agent/\U0001F600",
			NotBefore: at("1999-12-31T23:59:59.999999Z"), NotAfter: at("2100-01-01T00:00:00Z"),
			IssuerKeyID: "ab", PublicKeySHA256: "cd", NodeID: "n\u00f6de",
			CommittedAt: at("2000-01-01T00:00:00Z"), CertDER: []byte{0},
		},
		prev:      prevHash,
		canonical: "0100000100000000000000000266660000001e7370696666653a2f2f6578616d706c652e6f72672f636166c3a92fe29883000000257370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742ff09f988000035d013b37dfff000e9326dd03c000000000026162000000026364000000056ec3b6646500035d013b37e0000000000100",
		hash:      "008c3ec299547400acb61f3c4a39172cc76a713d6476ff68ce736ca50289c70d",
	},
}

func TestCanonicalGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.name, func(t *testing.T) {
			got := g.rec.Canonical()
			if h := hex.EncodeToString(got); h != g.canonical {
				t.Errorf("canonical bytes changed (a record format change needs a Version bump):\n got %s\nwant %s", h, g.canonical)
			}
			if h := hex.EncodeToString(ChainHash(g.prev, &g.rec)); h != g.hash {
				t.Errorf("chain hash changed:\n got %s\nwant %s", h, g.hash)
			}
			// Seal and Verify agree with the vector.
			r := g.rec
			r.Seal(g.prev)
			if !bytes.Equal(r.Hash, mustHex(t, g.hash)) || !bytes.Equal(r.PrevHash, g.prev) || r.Verify(g.prev) != nil {
				t.Errorf("Seal/Verify disagree with the vector: %x %v", r.Hash, r.Verify(g.prev))
			}
		})
	}
}

// TestCanonicalNormalisesTimes: a time in another zone, or with
// nanoseconds, encodes as its UTC microsecond (what the stores keep), so
// the vectors above hold whatever clock stamped the record.
func TestCanonicalNormalisesTimes(t *testing.T) {
	g := goldens[0]
	r := g.rec
	zone := time.FixedZone("UTC+2", 2*3600)
	r.NotBefore = r.NotBefore.In(zone)
	r.CommittedAt = r.CommittedAt.Add(999 * time.Nanosecond).In(zone)
	if h := hex.EncodeToString(r.Canonical()); h != g.canonical {
		t.Fatalf("zone or nanoseconds changed the encoding:\n got %s\nwant %s", h, g.canonical)
	}
}

// TestCanonicalEveryFieldCounts: changing any one field (or the link)
// changes the hash, so no field escapes the chain.
func TestCanonicalEveryFieldCounts(t *testing.T) {
	base := goldens[0]
	want := hex.EncodeToString(ChainHash(base.prev, &base.rec))
	edits := map[string]func(r *Record){
		"Seq":             func(r *Record) { r.Seq++ },
		"Serial":          func(r *Record) { r.Serial += "0" },
		"SPIFFEID":        func(r *Record) { r.SPIFFEID += "x" },
		"AgentID":         func(r *Record) { r.AgentID = "" },
		"NotBefore":       func(r *Record) { r.NotBefore = r.NotBefore.Add(time.Microsecond) },
		"NotAfter":        func(r *Record) { r.NotAfter = r.NotAfter.Add(time.Microsecond) },
		"IssuerKeyID":     func(r *Record) { r.IssuerKeyID = strings.ToUpper(r.IssuerKeyID) },
		"PublicKeySHA256": func(r *Record) { r.PublicKeySHA256 = r.PublicKeySHA256[1:] },
		"NodeID":          func(r *Record) { r.NodeID = "n2" },
		"CommittedAt":     func(r *Record) { r.CommittedAt = r.CommittedAt.Add(time.Microsecond) },
		"CertDER":         func(r *Record) { r.CertDER = append([]byte(nil), r.CertDER[:len(r.CertDER)-1]...) },
		// Moving bytes between adjacent strings keeps the concatenation:
		// the length prefixes must tell them apart.
		"Serial/SPIFFEID boundary": func(r *Record) { r.Serial, r.SPIFFEID = r.Serial+"s", r.SPIFFEID[1:] },
	}
	for name, edit := range edits {
		r := base.rec
		edit(&r)
		if hex.EncodeToString(ChainHash(base.prev, &r)) == want {
			t.Errorf("%s: editing it left the hash unchanged", name)
		}
	}
	if hex.EncodeToString(ChainHash(Genesis, &base.rec)) == want {
		t.Error("the link (prev hash) is not in the hash")
	}
}

// TestCheckpointMessageGolden pins the signed bytes of a checkpoint, both
// versions: stored checkpoints are verified against them forever.
func TestCheckpointMessageGolden(t *testing.T) {
	prev := uint64(40)
	head := mustHex(t, "4f6b2c1a9e8d7c6b5a49382716050403f2e1d0c9b8a7968574635241302f1e0d")
	for _, tt := range []struct {
		name string
		cp   Checkpoint
		want string
	}{
		{"v1 (no link)", Checkpoint{Seq: 42, Head: head, SignedAt: at("2025-01-02T03:04:05.123456Z"), NodeID: "n1"}, "746965723020617564697420636865636b706f696e7420763100000000000000002a000000204f6b2c1a9e8d7c6b5a49382716050403f2e1d0c9b8a7968574635241302f1e0d00062ab06a3af580000000026e31"},
		{"v2 (linked)", Checkpoint{Seq: 42, Head: head, SignedAt: at("2025-01-02T03:04:05.123456Z"), NodeID: "n1", Prev: &prev}, "746965723020617564697420636865636b706f696e7420763200000000000000002a000000204f6b2c1a9e8d7c6b5a49382716050403f2e1d0c9b8a7968574635241302f1e0d00062ab06a3af580000000026e310000000000000028"},
	} {
		if got := hex.EncodeToString(tt.cp.Message()); got != tt.want {
			t.Errorf("%s: checkpoint message changed:\n got %s\nwant %s", tt.name, got, tt.want)
		}
	}
}
