// Package auditremote is the auditor's and the witness's side of the
// AuditLog service (api/proto/tier0/v1/auditlog.proto): proofs, the
// verifiable export, witnessing and the witness requirement of `tier0
// audit verify`, all through a tier0 server with an auditor credential,
// with no access to the record store. Every checkpoint it is given is
// checked here (signature, audit key certificate against the caller's
// bundle, cosignatures), never trusted because the server sent it.
package auditremote

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
	"github.com/tier0-ca/tier0/storage"
)

// Prove returns the proof file of `tier0 audit prove` from the server:
// with serial the inclusion proof of its record against the newest tree
// checkpoint, else the consistency proof from tree size from to size to
// (0: the newest).
func Prove(ctx context.Context, c tier0v1.AuditLogClient, serial string, from, to int64) ([]byte, error) {
	if (serial == "") == (from == 0) {
		return nil, errors.New("give either --serial S or --from N [--to M]")
	}
	var resp *tier0v1.AuditProof
	var err error
	if serial != "" {
		resp, err = c.ProveInclusion(ctx, &tier0v1.ProveInclusionRequest{Serial: serial})
	} else {
		resp, err = c.ProveConsistency(ctx, &tier0v1.ProveConsistencyRequest{FromSize: from, ToSize: to})
	}
	if err != nil {
		return nil, err
	}
	var p tlog.Proof
	if err := json.Unmarshal(resp.GetProofJson(), &p); err != nil {
		return nil, fmt.Errorf("auditremote: the server sent no proof file: %w", err)
	}
	return resp.GetProofJson(), nil
}

// Export streams the verifiable export to w and returns its size.
func Export(ctx context.Context, c tier0v1.AuditLogClient, w io.Writer) (int64, error) {
	stream, err := c.ExportVerifiable(ctx, &tier0v1.ExportVerifiableRequest{})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		m, err := w.Write(chunk.GetData())
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("auditremote: export: %w", err)
		}
	}
}

// ExportFile writes the verifiable export to the new file path (an
// existing file is refused; a failed export leaves none).
func ExportFile(ctx context.Context, c tier0v1.AuditLogClient, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644) //nolint:gosec // an audit export is for auditors, not secret
	if err != nil {
		return 0, err
	}
	n, err := Export(ctx, c, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return 0, err
	}
	return n, nil
}

// Source is a witness.Source over the server: the newest tree checkpoint
// and consistency proofs (which the witness checks itself).
type Source struct{ C tier0v1.AuditLogClient }

// TreeCheckpoints returns the newest tree checkpoint (the only one a
// witness looks at).
func (s Source) TreeCheckpoints(ctx context.Context) ([]storage.TreeCheckpoint, error) {
	tc, err := Newest(ctx, s.C)
	if err != nil {
		return nil, err
	}
	return []storage.TreeCheckpoint{tc}, nil
}

// Consistency returns the server's consistency proof from size from to to.
func (s Source) Consistency(ctx context.Context, from, to int64) (*tlog.Proof, error) {
	resp, err := s.C.ProveConsistency(ctx, &tier0v1.ProveConsistencyRequest{FromSize: from, ToSize: to})
	if err != nil {
		return nil, err
	}
	var p tlog.Proof
	if err := json.Unmarshal(resp.GetProofJson(), &p); err != nil {
		return nil, fmt.Errorf("auditremote: the server sent no proof file: %w", err)
	}
	return &p, nil
}

// Newest returns the server's newest tree checkpoint, unverified.
func Newest(ctx context.Context, c tier0v1.AuditLogClient) (storage.TreeCheckpoint, error) {
	resp, err := c.GetTreeCheckpoint(ctx, &tier0v1.GetTreeCheckpointRequest{})
	if err != nil {
		return storage.TreeCheckpoint{}, err
	}
	return storage.TreeCheckpoint{Size: resp.GetSize(), Note: resp.GetNote(), CertDER: resp.GetCertDer()}, nil
}

// Submit publishes a witness's cosigned note back to the log, where
// auditors find it (GetTreeCheckpoint, the verifiable export).
func Submit(ctx context.Context, c tier0v1.AuditLogClient, name string, pub ed25519.PublicKey, cosigned []byte) (*tier0v1.AddCosignatureResponse, error) {
	return c.AddCosignature(ctx, &tier0v1.AddCosignatureRequest{Witness: name, WitnessKey: pub, CosignedNote: cosigned})
}

// Witnessed is the outcome of RequireWitnesses.
type Witnessed struct {
	Checkpoint tlog.Checkpoint
	By         []string // the required witnesses that cosigned it
}

// RequireWitnesses checks that the server's newest tree checkpoint is
// signed by an audit key certificate that chains to roots and carries
// valid cosignatures of at least min of witnesses (name -> key).
func RequireWitnesses(ctx context.Context, c tier0v1.AuditLogClient, roots []*x509.Certificate, witnesses map[string]ed25519.PublicKey, min int) (Witnessed, error) {
	if min <= 0 || min > len(witnesses) {
		return Witnessed{}, fmt.Errorf("auditremote: want 1..%d witness cosignatures, got %d", len(witnesses), min)
	}
	tc, err := Newest(ctx, c)
	if err != nil {
		return Witnessed{}, err
	}
	cp, err := tlog.Open(tc.Note, tc.CertDER, roots)
	if err != nil {
		return Witnessed{}, fmt.Errorf("auditremote: the newest tree checkpoint (size %d): %w", tc.Size, err)
	}
	w := Witnessed{Checkpoint: cp, By: witness.CosignedBy(tc.Note, witnesses)}
	if len(w.By) < min {
		return w, fmt.Errorf("the newest tree checkpoint (size %d) carries valid cosignatures of %d of the %d witnesses given (%v), %d required: run the witnesses against the log, then verify again",
			cp.Size, len(w.By), len(witnesses), w.By, min)
	}
	return w, nil
}

// WitnessRound runs one round of witness w against the server (fetch the
// newest tree checkpoint, check consistency, cosign) and publishes the
// cosignature to the log. The cosigned note is returned even when
// publishing failed (with the error): the witness's state has moved.
func WitnessRound(ctx context.Context, c tier0v1.AuditLogClient, w *witness.Witness, name string, pub ed25519.PublicKey) ([]byte, *tier0v1.AddCosignatureResponse, error) {
	note, err := w.Step(ctx, Source{C: c})
	if err != nil {
		return nil, nil, err
	}
	resp, err := Submit(ctx, c, name, pub, note)
	if err != nil {
		return note, nil, fmt.Errorf("cosigned, but not published to the log: %w", err)
	}
	return note, resp, nil
}

// RequireWitnessSpecs is RequireWitnesses with the witnesses given as
// NAME=HEX specs (witness.ParseKeys) and min 0 meaning all of them.
func RequireWitnessSpecs(ctx context.Context, c tier0v1.AuditLogClient, roots []*x509.Certificate, specs []string, min int) (Witnessed, int, error) {
	ws, err := witness.ParseKeys(specs)
	if err != nil {
		return Witnessed{}, 0, err
	}
	if min <= 0 {
		min = len(ws)
	}
	got, err := RequireWitnesses(ctx, c, roots, ws, min)
	return got, len(ws), err
}
