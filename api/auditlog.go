package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/auditexport"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
	"github.com/tier0-ca/tier0/storage"
)

// TreeLog is the transparency side of the record store that the AuditLog
// service reads and cosigns (the storage stores implement it).
type TreeLog interface {
	auditexport.Source // records, checkpoints, lineage, tree checkpoints
	storage.TreeCosigner
}

// maxCosignedNote bounds AddCosignature's note (a checkpoint note with
// MaxCosignatures lines is about 4 KiB).
const maxCosignedNote = 64 << 10

// exportChunk is the largest ExportChunk.
const exportChunk = 1 << 20

type auditLogService struct {
	tier0v1.UnimplementedAuditLogServer
	s *Server
	// trees keeps the Merkle tree between proofs, so a proof reads only
	// the records appended since the last (64 bytes a record in memory).
	trees tlog.TreeCache
}

func (a *auditLogService) tree(ctx context.Context, method string) (TreeLog, error) {
	if a.s.cfg.TreeLog == nil {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: no record store with tree checkpoints configured", ha.ErrUnavailable))
	}
	return a.s.cfg.TreeLog, nil
}

// treeCheckpoint returns the stored tree checkpoint of size (0: the newest).
func treeCheckpoint(ctx context.Context, t TreeLog, size int64) (storage.TreeCheckpoint, error) {
	tcs, err := t.TreeCheckpoints(ctx)
	if err != nil {
		return storage.TreeCheckpoint{}, fmt.Errorf("api: tree checkpoints: %w", err)
	}
	if len(tcs) == 0 {
		return storage.TreeCheckpoint{}, fmt.Errorf("%w: the log has no tree checkpoint yet (the leader signs one every checkpoint interval)", ha.ErrNotFound)
	}
	if size == 0 {
		return tcs[len(tcs)-1], nil
	}
	for _, tc := range tcs {
		if tc.Size == size {
			return tc, nil
		}
	}
	return storage.TreeCheckpoint{}, fmt.Errorf("%w: no tree checkpoint of size %d", ha.ErrNotFound, size)
}

func (a *auditLogService) GetTreeCheckpoint(ctx context.Context, req *tier0v1.GetTreeCheckpointRequest) (*tier0v1.TreeCheckpoint, error) {
	const method = "GetTreeCheckpoint"
	t, err := a.tree(ctx, method)
	if err != nil {
		return nil, err
	}
	if req.GetSize() < 0 {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: size %d", errBadInput, req.GetSize()))
	}
	tc, err := treeCheckpoint(ctx, t, req.GetSize())
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	return &tier0v1.TreeCheckpoint{Size: tc.Size, Note: tc.Note, CertDer: tc.CertDER, SignedAt: tc.SignedAt.UnixMicro()}, nil
}

// proofErr maps a prover error: no tree checkpoint covering it is a
// failed precondition (wait for the next one); tlog.ErrTree (the store no
// longer hashes to a signed root) is DataLoss (codeOf).
func proofErr(err error) error {
	if errors.Is(err, tlog.ErrNoCheckpoint) {
		return fmt.Errorf("%w: %w", ha.ErrPrecondition, err)
	}
	return fmt.Errorf("api: prove: %w", err)
}

func proofMessage(p *tlog.Proof) (*tier0v1.AuditProof, error) {
	raw, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("api: prove: %w", err)
	}
	return &tier0v1.AuditProof{ProofJson: append(raw, '\n')}, nil
}

func (a *auditLogService) ProveInclusion(ctx context.Context, req *tier0v1.ProveInclusionRequest) (*tier0v1.AuditProof, error) {
	const method = "ProveInclusion"
	t, err := a.tree(ctx, method)
	if err != nil {
		return nil, err
	}
	seq := req.GetSeq()
	switch {
	case (req.GetSerial() == "") == (seq == 0):
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: give either serial or seq", errBadInput))
	case req.GetSerial() != "":
		if a.s.cfg.Records == nil {
			return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: no record store configured", ha.ErrUnavailable))
		}
		recs, err := a.s.cfg.Records.Query(ctx, storage.Filter{Serial: req.GetSerial(), Limit: 1})
		if err != nil {
			if !errors.Is(err, storage.ErrBadFilter) {
				err = fmt.Errorf("api: prove: %w", err)
			}
			return nil, a.s.toStatus(ctx, method, err)
		}
		if len(recs) == 0 {
			return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: no record with serial %s", ha.ErrNotFound, req.GetSerial()))
		}
		seq = recs[0].Seq
	}
	p, err := tlog.Prover{Store: t, Cache: &a.trees}.Inclusion(ctx, seq)
	if err != nil {
		return nil, a.s.toStatus(ctx, method, proofErr(err))
	}
	a.s.log.InfoContext(ctx, "audit prove inclusion", "by", callerFrom(ctx).id.String(), "seq", seq, "size", sizeOf(p.Checkpoint))
	out, err := proofMessage(p)
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	return out, nil
}

func sizeOf(note string) int64 {
	c, _ := tlog.ParseCheckpoint(tlog.NoteText([]byte(note)))
	return c.Size
}

func (a *auditLogService) ProveConsistency(ctx context.Context, req *tier0v1.ProveConsistencyRequest) (*tier0v1.AuditProof, error) {
	const method = "ProveConsistency"
	t, err := a.tree(ctx, method)
	if err != nil {
		return nil, err
	}
	from, to := req.GetFromSize(), req.GetToSize()
	if from <= 0 || to < 0 || (to != 0 && to < from) {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: want 0 < from_size <= to_size (or to_size 0: the newest), got %d, %d", errBadInput, from, to))
	}
	p, err := tlog.Prover{Store: t, Cache: &a.trees}.Consistency(ctx, from, to)
	if err != nil {
		return nil, a.s.toStatus(ctx, method, proofErr(err))
	}
	out, err := proofMessage(p)
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	return out, nil
}

func (a *auditLogService) ExportVerifiable(_ *tier0v1.ExportVerifiableRequest, stream grpc.ServerStreamingServer[tier0v1.ExportChunk]) error {
	const method = "ExportVerifiable"
	ctx := stream.Context()
	t, err := a.tree(ctx, method)
	if err != nil {
		return err
	}
	var roots []*x509.Certificate
	for _, der := range a.s.cfg.State.Bundle().Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return a.s.toStatus(ctx, method, fmt.Errorf("api: export: bundle root: %w", err))
		}
		roots = append(roots, c)
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := auditexport.Write(ctx, pw, t, roots, a.s.cfg.Clock())
		pw.CloseWithError(err)
		done <- result{n, err}
	}()
	buf := make([]byte, exportChunk)
	var sent int64
	for {
		n, rerr := io.ReadFull(pr, buf)
		if n > 0 {
			if err := stream.Send(&tier0v1.ExportChunk{Data: buf[:n]}); err != nil {
				pr.CloseWithError(err)
				<-done
				return err
			}
			sent += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			<-done
			return a.s.toStatus(ctx, method, fmt.Errorf("api: export: %w", rerr))
		}
	}
	r := <-done
	if r.err != nil {
		return a.s.toStatus(ctx, method, fmt.Errorf("api: export: %w", r.err))
	}
	a.s.log.InfoContext(ctx, "audit export verifiable", "by", callerFrom(ctx).id.String(), "records", r.n, "bytes", sent)
	return nil
}

func (a *auditLogService) AddCosignature(ctx context.Context, req *tier0v1.AddCosignatureRequest) (*tier0v1.AddCosignatureResponse, error) {
	const method = "AddCosignature"
	t, err := a.tree(ctx, method)
	if err != nil {
		return nil, err
	}
	if len(req.GetCosignedNote()) > maxCosignedNote {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: cosigned_note is %d bytes, above the limit of %d bytes", errBadInput, len(req.GetCosignedNote()), maxCosignedNote))
	}
	c, err := tlog.ParseCheckpoint(tlog.NoteText(req.GetCosignedNote()))
	if err != nil || c.Size <= 0 {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: cosigned_note is not a checkpoint note (%v)", errBadInput, err))
	}
	pub := ed25519.PublicKey(req.GetWitnessKey())
	for attempt := 0; ; attempt++ {
		tc, err := treeCheckpoint(ctx, t, c.Size)
		if err != nil {
			return nil, a.s.toStatus(ctx, method, err)
		}
		updated, added, err := witness.AddTo(tc.Note, req.GetCosignedNote(), req.GetWitness(), pub)
		if err != nil {
			if errors.Is(err, witness.ErrCosignature) {
				err = fmt.Errorf("%w: %w", errBadInput, err)
			}
			return nil, a.s.toStatus(ctx, method, err)
		}
		if added {
			swapped, err := t.SwapTreeNote(ctx, tc.Size, tc.Note, updated)
			if err != nil {
				return nil, a.s.toStatus(ctx, method, fmt.Errorf("api: cosign: %w", err))
			}
			if !swapped { // another witness cosigned in between: merge again
				if attempt >= 8 {
					return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: the checkpoint kept changing; retry", ha.ErrUnavailable))
				}
				continue
			}
			a.s.log.InfoContext(ctx, "witness cosignature added", "by", callerFrom(ctx).id.String(), "witness", req.GetWitness(), "size", tc.Size)
		}
		return &tier0v1.AddCosignatureResponse{Size: tc.Size, Added: added,
			Cosignatures: uint32(bytes.Count(updated, []byte("\n— ")) - 1)}, nil
	}
}
