package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/storage"
)

type adminService struct {
	tier0v1.UnimplementedAdminServer
	s *Server
}

func (a *adminService) CreateJoinToken(ctx context.Context, req *tier0v1.CreateJoinTokenRequest) (*tier0v1.CreateJoinTokenResponse, error) {
	const method = "CreateJoinToken"
	s := a.s
	subject := req.GetAgent()
	if req.GetNode() != "" { // a token for a new cluster node (cluster.go)
		if req.GetAgent() != "" {
			return nil, s.toStatus(ctx, method, fmt.Errorf("%w: give agent or node, not both", errBadInput))
		}
		if _, err := roles.NodeID(s.cfg.TrustDomain, req.GetNode()); err != nil {
			return nil, s.toStatus(ctx, method, fmt.Errorf("%w: node name: %v", errBadInput, err))
		}
		subject = NodeTokenPrefix + req.GetNode()
	} else if _, err := roles.AgentID(s.cfg.TrustDomain, req.GetAgent()); err != nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: agent name: %v", errBadInput, err))
	}
	return s.createToken(ctx, method, subject, req.GetTtlSeconds()) // agentadmin.go
}

func (a *adminService) CreateEntry(ctx context.Context, req *tier0v1.CreateEntryRequest) (*tier0v1.CreateEntryResponse, error) {
	const method = "CreateEntry"
	s := a.s
	nodeSels, err := nodeSelectors(req)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if nodeSels == nil {
		if _, err := roles.AgentID(s.cfg.TrustDomain, req.GetAgent()); err != nil {
			return nil, s.toStatus(ctx, method, fmt.Errorf("%w: agent name: %v", errBadInput, err))
		}
	}
	id, err := ca.ParseID(req.GetSpiffeId())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if err := ca.ValidateWorkloadID(s.cfg.TrustDomain, id); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	if ttl == 0 {
		ttl = s.cfg.DefaultEntryTTL
	}
	if ttl < s.cfg.MinTTL || ttl > s.cfg.MaxTTL {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: ttl %v outside bounds [%v, %v]", ca.ErrInvalidTTL, ttl, s.cfg.MinTTL, s.cfg.MaxTTL))
	}
	selectors, err := ca.NormalizeSelectors(req.GetSelectors())
	if err != nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: %v", errBadInput, err))
	}
	federates, err := ca.NormalizeFederatesWith(s.cfg.TrustDomain, req.GetFederatesWith())
	if err != nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: federates with: %v", errBadInput, err))
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	e, err := s.cfg.State.CreateEntry(ctx, ha.Entry{
		ID: hex.EncodeToString(raw[:]), Agent: req.GetAgent(), SPIFFEID: id.String(), TTL: ttl,
		CreatedAt: s.cfg.Clock().UTC().Truncate(time.Second), Selectors: selectors,
		FederatesWith: nonEmpty(federates), NodeSelectors: nodeSels,
	})
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "entry created", "entry", e.ID, "agent", e.Agent, "spiffe_id", e.SPIFFEID, "selectors", e.Selectors, "node_selectors", e.NodeSelectors, "federates_with", e.FederatesWith, "by", callerFrom(ctx).id.String())
	return &tier0v1.CreateEntryResponse{Entry: entryToPB(e)}, nil
}

func (a *adminService) ListEntries(_ context.Context, req *tier0v1.ListEntriesRequest) (*tier0v1.ListEntriesResponse, error) {
	entries := a.s.cfg.State.ListEntries(req.GetAgent())
	out := make([]*tier0v1.Entry, 0, len(entries))
	for _, e := range entries {
		out = append(out, entryToPB(e))
	}
	return &tier0v1.ListEntriesResponse{Entries: out}, nil
}

func (a *adminService) DeleteEntry(ctx context.Context, req *tier0v1.DeleteEntryRequest) (*tier0v1.DeleteEntryResponse, error) {
	const method = "DeleteEntry"
	if req.GetId() == "" {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: entry id is required", errBadInput))
	}
	if err := a.s.cfg.State.DeleteEntry(ctx, req.GetId()); err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	a.s.log.InfoContext(ctx, "entry deleted", "entry", req.GetId(), "by", callerFrom(ctx).id.String())
	return &tier0v1.DeleteEntryResponse{}, nil
}

func entryToPB(e ha.Entry) *tier0v1.Entry {
	return &tier0v1.Entry{Id: e.ID, Agent: e.Agent, SpiffeId: e.SPIFFEID, TtlSeconds: int64(e.TTL / time.Second), CreatedAt: e.CreatedAt.Unix(), Selectors: e.Selectors, FederatesWith: e.FederatesWith, NodeSelectors: e.NodeSelectors}
}

// nonEmpty is s, or nil when empty (an entry without federation is stored
// exactly as before the field existed).
func nonEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

type auditService struct {
	tier0v1.UnimplementedAuditServer
	s *Server
}

func (a *auditService) ListRecords(ctx context.Context, req *tier0v1.ListRecordsRequest) (*tier0v1.ListRecordsResponse, error) {
	const method = "ListRecords"
	s := a.s
	if s.cfg.Records == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: no record store configured", ha.ErrUnavailable))
	}
	if req.GetLimit() > 10000 {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: limit %d above 10000", errBadInput, req.GetLimit()))
	}
	f := storage.Filter{SPIFFEID: req.GetSpiffeId(), AgentID: req.GetAgentId(), Serial: req.GetSerial(), Limit: int(req.GetLimit()),
		IssuerKeyID: req.GetIssuerKeyId(), BeforeSeq: req.GetBeforeSeq(), Kind: req.GetKind()}
	var err error
	if f.Since, err = unixArg("since", req.GetSince()); err != nil { // audit.go
		return nil, s.toStatus(ctx, method, err)
	}
	if f.Until, err = unixArg("until", req.GetUntil()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if f.CommittedSince, err = unixArg("committed_since", req.GetCommittedSince()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if f.CommittedUntil, err = unixArg("committed_until", req.GetCommittedUntil()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	recs, err := s.cfg.Records.Query(ctx, f)
	if err != nil {
		if errors.Is(err, storage.ErrBadFilter) {
			return nil, s.toStatus(ctx, method, err)
		}
		return nil, s.toStatus(ctx, method, fmt.Errorf("api: query records: %w", err))
	}
	out := &tier0v1.ListRecordsResponse{Records: make([]*tier0v1.IssuanceRecord, len(recs))}
	for i, r := range recs {
		out.Records[i] = RecordToPB(r)
	}
	return out, nil
}

// RecordToPB converts a journal record to its wire form.
func RecordToPB(r *record.Record) *tier0v1.IssuanceRecord {
	return &tier0v1.IssuanceRecord{
		Seq: r.Seq, Serial: r.Serial, SpiffeId: r.SPIFFEID, AgentId: r.AgentID,
		NotBefore: r.NotBefore.UnixMicro(), NotAfter: r.NotAfter.UnixMicro(),
		IssuerKeyId: r.IssuerKeyID, PublicKeySha256: r.PublicKeySHA256, NodeId: r.NodeID,
		CommittedAt: r.CommittedAt.UnixMicro(), CertDer: r.CertDER, PrevHash: r.PrevHash, Hash: r.Hash,
		EventAction: r.Action, EventDetail: r.Detail,
	}
}

// RecordFromPB is the inverse of RecordToPB.
func RecordFromPB(p *tier0v1.IssuanceRecord) *record.Record {
	return &record.Record{
		Seq: p.GetSeq(), Serial: p.GetSerial(), SPIFFEID: p.GetSpiffeId(), AgentID: p.GetAgentId(),
		NotBefore: time.UnixMicro(p.GetNotBefore()).UTC(), NotAfter: time.UnixMicro(p.GetNotAfter()).UTC(),
		IssuerKeyID: p.GetIssuerKeyId(), PublicKeySHA256: p.GetPublicKeySha256(), NodeID: p.GetNodeId(),
		CommittedAt: time.UnixMicro(p.GetCommittedAt()).UTC(), CertDER: p.GetCertDer(), PrevHash: p.GetPrevHash(), Hash: p.GetHash(),
		Action: p.GetEventAction(), Detail: p.GetEventDetail(),
	}
}
