package auditcli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/storage"
)

// TreeStore is a record store that keeps tree checkpoints: what proofs and
// witnesses read.
type TreeStore interface {
	storage.AuditStore
	tlog.Ranger
	storage.TreeStore
}

// OpenTreeStore opens the record store at dsn for proofs and witnessing;
// the caller calls close.
func OpenTreeStore(ctx context.Context, dsn string) (ts TreeStore, closeStore func(), err error) {
	st, err := server.OpenStore(ctx, dsn)
	if err != nil {
		return nil, nil, err
	}
	ts, ok := st.(TreeStore)
	if !ok {
		st.Close()
		return nil, nil, fmt.Errorf("the store %T keeps no tree checkpoints", st)
	}
	return ts, func() { st.Close() }, nil
}

// Prove builds the proof file of `audit prove` as indented JSON: with
// serial (any spelling) the inclusion proof of its record against the
// newest tree checkpoint, else the consistency proof from tree size from
// to size to (0: the newest).
func Prove(ctx context.Context, ts TreeStore, serial string, from, to int64) ([]byte, error) {
	if (serial == "") == (from == 0) {
		return nil, errors.New("give either --serial S or --from N [--to M]")
	}
	p := tlog.Prover{Store: ts}
	var proof *tlog.Proof
	if serial != "" {
		recs, err := ts.Query(ctx, storage.Filter{Serial: serial, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			return nil, fmt.Errorf("no record with serial %s", serial)
		}
		if proof, err = p.Inclusion(ctx, recs[0].Seq); err != nil {
			return nil, err
		}
	} else {
		var err error
		if proof, err = p.Consistency(ctx, from, to); err != nil {
			return nil, err
		}
	}
	raw, err := json.MarshalIndent(proof, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// ProofResult is what a verified proof file shows.
type ProofResult struct {
	Proof      tlog.Proof
	Checkpoint tlog.Checkpoint // the (newer) signed checkpoint it verifies against
}

// CheckProof verifies the proof file raw (named name, for errors) with
// roots alone. For an inclusion proof and a certFile (PEM), the proved
// record must also be that certificate.
func CheckProof(name string, raw []byte, roots []*x509.Certificate, certFile string) (*ProofResult, error) {
	var p tlog.Proof
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%s: not a proof file: %w", name, err)
	}
	c, err := p.Verify(roots)
	if err != nil {
		return nil, fmt.Errorf("proof does NOT verify: %w", err)
	}
	if p.Kind == tlog.KindInclusion && certFile != "" {
		certs, err := LoadPEMCerts(certFile)
		if err != nil {
			return nil, err
		}
		if string(certs[0].Raw) != string(p.Record.CertDER) {
			return nil, fmt.Errorf("proof verifies, but for another certificate than %s (record %d, serial %s)", certFile, p.Record.Seq, p.Record.Serial)
		}
	}
	return &ProofResult{Proof: p, Checkpoint: c}, nil
}

// Write prints the result as one line of text or (format JSON) an
// indented JSON object.
func (r *ProofResult) Write(w io.Writer, format string) error {
	p, c := &r.Proof, r.Checkpoint
	var v map[string]any
	var text string
	if p.Kind == tlog.KindInclusion {
		v = map[string]any{"ok": true, "kind": p.Kind, "seq": p.Record.Seq, "serial": CanonicalSerial(p.Record.Serial),
			"spiffe_id": p.Record.SPIFFEID, "leaf": p.Index, "origin": c.Origin, "size": c.Size, "root": fmt.Sprintf("%x", c.Root[:])}
		text = fmt.Sprintf("OK: record %d (serial %s, %s) is leaf %d of the log %s of size %d, root %x\n",
			p.Record.Seq, CanonicalSerial(p.Record.Serial), p.Record.SPIFFEID, p.Index, c.Origin, c.Size, c.Root[:])
	} else {
		old, _ := tlog.ParseCheckpoint(tlog.NoteText([]byte(p.OldCheckpoint)))
		v = map[string]any{"ok": true, "kind": p.Kind, "origin": c.Origin, "size": c.Size, "root": fmt.Sprintf("%x", c.Root[:]),
			"old_size": old.Size, "old_root": fmt.Sprintf("%x", old.Root[:])}
		text = fmt.Sprintf("OK: the tree of size %d (root %x) extends the tree of size %d (root %x) of the log %s\n",
			c.Size, c.Root[:], old.Size, old.Root[:], c.Origin)
	}
	if format == JSON {
		return cliout.PrintJSON(w, v)
	}
	_, err := io.WriteString(w, text)
	return err
}
