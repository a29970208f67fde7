package api

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/storage"
)

// AuditReader is what the Audit service reads beyond Records (the storage
// stores implement it): VerifyChain the record bounds, records and
// checkpoints that storage.VerifyAudit checks, ListDecisions the decision
// log.
type AuditReader interface {
	storage.AuditReader
	QueryDecisions(ctx context.Context, f storage.DecisionFilter) ([]storage.Decision, error)
}

// Every record store serves the Audit service.
var (
	_ Records     = storage.Store(nil)
	_ AuditReader = storage.AuditStore(nil)
)

// maxUnixSeconds bounds since/until (year 9999).
const maxUnixSeconds = 253402300799

func unixArg(name string, v int64) (time.Time, error) {
	switch {
	case v < 0 || v > maxUnixSeconds:
		return time.Time{}, fmt.Errorf("%w: %s %d is outside years 1970-9999", errBadInput, name, v)
	case v == 0:
		return time.Time{}, nil
	}
	return time.Unix(v, 0).UTC(), nil
}

func (a *auditService) VerifyChain(ctx context.Context, req *tier0v1.VerifyChainRequest) (*tier0v1.VerifyChainResponse, error) {
	const method = "VerifyChain"
	s := a.s
	if s.cfg.Audit == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: no audit store configured", ha.ErrUnavailable))
	}
	if req.GetToSeq() != 0 && req.GetToSeq() < req.GetFromSeq() {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: to_seq %d is before from_seq %d", errBadInput, req.GetToSeq(), req.GetFromSeq()))
	}
	var roots []*x509.Certificate
	for _, der := range s.cfg.State.Bundle().Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, s.toStatus(ctx, method, fmt.Errorf("api: verify: bundle root: %w", err))
		}
		roots = append(roots, c)
	}
	var newest uint64 // read before the store: see RequireCheckpoint
	if s.cfg.Checkpoints != nil {
		newest = s.cfg.Checkpoints.NewestExportedCheckpoint()
	}
	res, err := storage.VerifyAuditWith(ctx, s.cfg.Audit, storage.AuditOptions{From: req.GetFromSeq(), To: req.GetToSeq(),
		Roots: roots, Certs: storage.NewCertChecker(roots, nil)})
	if err != nil {
		if errors.Is(err, storage.ErrBadFilter) {
			return nil, s.toStatus(ctx, method, err)
		}
		return nil, s.toStatus(ctx, method, fmt.Errorf("api: verify: %w", err))
	}
	res.RequireCheckpoint(newest, req.GetToSeq() == 0)
	if err := s.compareJournal(ctx, &res); err != nil { // auditjournal.go
		return nil, s.toStatus(ctx, method, fmt.Errorf("api: verify: %w", err))
	}
	s.log.InfoContext(ctx, "audit verify", "by", callerFrom(ctx).id.String(), "from", res.From, "to", res.To,
		"ok", res.OK(), "first_bad", res.FirstBad, "problem", res.Problem)
	return VerifyResultToPB(res), nil
}

// VerifyResultToPB converts a verification result to its wire form.
func VerifyResultToPB(r storage.AuditResult) *tier0v1.VerifyChainResponse {
	return &tier0v1.VerifyChainResponse{
		Ok: r.OK(), FromSeq: r.From, ToSeq: r.To, Checked: r.Checked, FirstBadSeq: r.FirstBad,
		Problem: r.Problem, Detail: r.Detail, AnchorSeq: r.Anchor, Checkpoints: uint32(r.Checkpoints),
		LastCheckpointSeq: r.LastCheckpoint, Head: r.Head,
		DecisionsChecked: r.Decisions.Checked, DecisionsTo: r.Decisions.To, DecisionCheckpoints: uint32(r.Decisions.Checkpoints),
		LastDecisionCheckpoint: r.Decisions.LastCheckpoint, DecisionFirstBad: r.Decisions.FirstBad,
	}
}

func (a *auditService) ListDecisions(ctx context.Context, req *tier0v1.ListDecisionsRequest) (*tier0v1.ListDecisionsResponse, error) {
	const method = "ListDecisions"
	s := a.s
	if s.cfg.Audit == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: no audit store configured", ha.ErrUnavailable))
	}
	f := storage.DecisionFilter{Caller: req.GetCaller(), Requested: req.GetRequested(), Denied: req.GetDeniedOnly(), Limit: int(req.GetLimit())}
	var err error
	if f.Since, err = unixArg("since", req.GetSince()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if f.Until, err = unixArg("until", req.GetUntil()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if req.GetLimit() > storage.MaxLimit {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: limit %d above %d", errBadInput, req.GetLimit(), storage.MaxLimit))
	}
	ds, err := s.cfg.Audit.QueryDecisions(ctx, f)
	if err != nil {
		if errors.Is(err, storage.ErrBadFilter) {
			return nil, s.toStatus(ctx, method, err)
		}
		return nil, s.toStatus(ctx, method, fmt.Errorf("api: query decisions: %w", err))
	}
	out := &tier0v1.ListDecisionsResponse{Decisions: make([]*tier0v1.AuthzDecision, len(ds))}
	for i, d := range ds {
		out.Decisions[i] = &tier0v1.AuthzDecision{Id: d.ID, At: d.At.UnixMicro(), NodeId: d.NodeID, Caller: d.Caller,
			Requested: d.Requested, Allowed: d.Allowed, Reason: d.Reason, Code: d.Code}
	}
	return out, nil
}
