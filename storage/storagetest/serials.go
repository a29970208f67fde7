package storagetest

import (
	"context"
	"slices"
	"testing"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/storage"
)

// SerialChain returns 6 sealed records whose serials are spelled as tier0
// records spell them (big.Int.Text(16): lower case, no leading zero): odd
// lengths (a leading zero nibble in openssl's spelling), a high first
// byte, and a JWT-SVID (seq 4, issuer_key_id "jwt:<kid>", its jti).
func SerialChain() []*record.Record {
	serials := []string{"4a7a0ff", "a", "80", "fa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4", "abcdef12", "d12"}
	out := make([]*record.Record, len(serials))
	prev := record.Genesis
	for i, s := range serials {
		r := Gen("serials", uint64(i+1))
		r.Serial = s
		if i == 3 {
			r.IssuerKeyID = "jwt:k1"
		}
		prev = r.Seal(prev)
		out[i] = r
	}
	return out
}

// SerialLookups are spellings of SerialChain's serials and the seq each
// finds (0: none).
var SerialLookups = []struct {
	Spelling string
	Seq      uint64
}{
	{"4a7a0ff", 1}, {"04A7A0FF", 1}, {"04a7a0ff", 1}, {"0004a7a0ff", 1}, {"04:a7:a0:ff", 1}, {"4:A7:A0:FF", 1},
	{"0x4A7A0FF", 1}, {"hex:04a7a0ff", 1}, {"dec:78094591", 1}, {" 04A7A0FF ", 1},
	{"0A", 2}, {"a", 2}, {"dec:10", 2}, {"00:0a", 2},
	{"80", 3}, {"00:80", 3}, {"dec:128", 3},
	{"0FA0B1C2D3E4F5A6B7C8D9E0F1A2B3C4", 4}, {"fa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4", 4},
	{"ABCDEF12", 5}, {"ab:cd:ef:12", 5},
	{"0D12", 6}, {"0d12", 6}, {"d12", 6}, {"dec:3346", 6},
	{"04A7A0FE", 0}, {"dec:11", 0}, {"4A7A0FF00", 0},
}

// CheckSerialLookups appends nothing: it queries s (holding SerialChain)
// by every SerialLookups spelling and by kind.
func CheckSerialLookups(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	for _, l := range SerialLookups {
		got, err := s.Query(ctx, storage.Filter{Serial: l.Spelling})
		if err != nil {
			t.Errorf("Query(serial %q): %v", l.Spelling, err)
			continue
		}
		var want []uint64
		if l.Seq != 0 {
			want = []uint64{l.Seq}
		}
		if !slices.Equal(seqs(got), want) {
			t.Errorf("Query(serial %q) = seqs %v, want %v", l.Spelling, seqs(got), want)
		}
	}
	for _, k := range []struct {
		kind string
		want []uint64
	}{{storage.KindJWT, []uint64{4}}, {storage.KindX509, []uint64{6, 5, 3, 2, 1}}, {"", []uint64{6, 5, 4, 3, 2, 1}}} {
		got, err := s.Query(ctx, storage.Filter{Kind: k.kind})
		if err != nil || !slices.Equal(seqs(got), k.want) {
			t.Errorf("Query(kind %q) = %v, %v; want %v", k.kind, seqs(got), err, k.want)
		}
	}
	if _, err := s.Query(ctx, storage.Filter{Kind: "x500"}); err == nil {
		t.Errorf("Query(kind x500) succeeded, want ErrBadFilter")
	}
}

func testSerials(t *testing.T, s storage.Store) {
	recs := SerialChain()
	Append(t, s, recs, 10)
	CheckSerialLookups(t, s)
	// The stored record keeps the serial it was hashed with.
	got := Collect(t, s, 1, 0)
	for i, r := range got {
		if r.Serial != recs[i].Serial {
			t.Errorf("seq %d: serial %q, want %q as hashed", r.Seq, r.Serial, recs[i].Serial)
		}
	}
	if vr, err := storage.Verify(context.Background(), s, 1, 0); err != nil || !vr.OK() {
		t.Errorf("Verify = %+v, %v", vr, err)
	}
}

// Migration0006Undo is the SQL that turns a store at the current schema
// back into one at schema 5 (the tables and columns of later migrations and the
// indexes and generated columns migration 0006 adds dropped, their
// schema_version rows deleted): TestSerialMigration writes
// records, undoes 0006 and reopens the store, so that the migration runs
// over existing rows.
var Migration0006Undo = []string{
	"DROP TABLE IF EXISTS tree_checkpoints",        // 0007
	"ALTER TABLE authz_decisions DROP COLUMN code", // 0009
	"DROP TABLE decision_checkpoints",              // 0010
	"DROP INDEX authz_decisions_chain_seq",
	"ALTER TABLE authz_decisions DROP COLUMN chain_seq",
	"ALTER TABLE authz_decisions DROP COLUMN prev_hash",
	"ALTER TABLE authz_decisions DROP COLUMN hash",
	"DROP INDEX issuance_records_serial_hex",
	"DROP INDEX issuance_records_kind_seq",
	"ALTER TABLE issuance_records DROP COLUMN serial_hex",
	"ALTER TABLE issuance_records DROP COLUMN kind",
	"ALTER TABLE issuance_records DROP COLUMN event_action", // 0008 (kind, which reads it, is gone)
	"ALTER TABLE issuance_records DROP COLUMN event_detail", // 0008
	"DELETE FROM schema_version WHERE version >= 6",
}
