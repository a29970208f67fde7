package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Registry is the replicated agent registry (implemented by *ha.Node;
// ha/agents.go). When Config.State implements it, every attestation bumps
// the subject's generation, agent and named-operator SVIDs carry it
// (ca.OIDAttestation), and every call of such a caller is checked against
// this node's local state (checkCredential).
type Registry interface {
	Attest(ctx context.Context, tokenHash string) (subject string, generation uint64, err error)
	AgentRenewed(ctx context.Context, subject string, generation uint64, serial string, notAfter time.Time) error
	CheckCredential(ctx context.Context, subject string, generation uint64, hasGen bool) error
	SetAgentState(ctx context.Context, subject, op, by string) (ha.Agent, error)
	Agents() []ha.Agent
	Agent(subject string) (ha.Agent, bool)
	CreateTokenBy(ctx context.Context, tokenHash, subject string, expiresAt time.Time, creator string) error
	Tokens() []ha.TokenInfo
	RevokeToken(ctx context.Context, prefix, by string) (ha.TokenInfo, error)
}

// AttestedIssuer mints SVIDs bound to an attestation generation
// (implemented by *ca.CA).
type AttestedIssuer interface {
	MintAttested(ctx context.Context, caller, id spiffeid.ID, csr []byte, ttl time.Duration, gen uint64) (ca.Result, error)
}

// Token subjects of named operators (the agent's is its bare name, a
// node's NodeTokenPrefix+NAME). "/" cannot occur in a name, so no
// subject can be mistaken for another kind.
const (
	AdminTokenPrefix   = "tier0-admin/"   //nolint:gosec // G101: a name prefix, not a credential
	AuditorTokenPrefix = "tier0-auditor/" //nolint:gosec // G101: a name prefix, not a credential
)

func (s *Server) registry() Registry {
	r, _ := s.cfg.State.(Registry)
	return r
}

// subjectID is the SPIFFE ID a token subject attests.
func subjectID(td spiffeid.TrustDomain, subject string) (spiffeid.ID, error) {
	if name, ok := strings.CutPrefix(subject, AdminTokenPrefix); ok {
		return roles.ID(td, roles.Admin, name)
	}
	if name, ok := strings.CutPrefix(subject, AuditorTokenPrefix); ok {
		return roles.ID(td, roles.Auditor, name)
	}
	return tokenSubject(td, subject)
}

// kindSubject is the registry subject of name of kind.
func kindSubject(kind tier0v1.SubjectKind, name string) string {
	switch kind {
	case tier0v1.SubjectKind_SUBJECT_KIND_ADMIN:
		return AdminTokenPrefix + name
	case tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR:
		return AuditorTokenPrefix + name
	}
	return name
}

// callerSubject is the registry subject of an agent or named operator
// ("" for nodes and the unnamed bootstrap credentials, which the registry
// does not govern).
func callerSubject(c caller) string {
	switch {
	case c.role == roles.Agent:
		return c.name
	case c.role == roles.Admin && c.name != "":
		return AdminTokenPrefix + c.name
	case c.role == roles.Auditor && c.name != "":
		return AuditorTokenPrefix + c.name
	}
	return ""
}

// resolveSubject reads a name of kind, or a full SPIFFE ID of an agent or
// named operator, into its registry subject.
func (s *Server) resolveSubject(name string, kind tier0v1.SubjectKind) (string, error) {
	if strings.HasPrefix(name, "spiffe://") {
		id, err := ca.ParseID(name)
		if err != nil {
			return "", err
		}
		r, n, _ := roles.Parse(s.cfg.TrustDomain, id)
		sub := callerSubject(caller{id: id, role: r, name: n})
		if sub == "" {
			return "", fmt.Errorf("%w: %s is not an agent or a named operator of %s", errBadInput, id, s.cfg.TrustDomain)
		}
		return sub, nil
	}
	sub := kindSubject(kind, name)
	if _, err := subjectID(s.cfg.TrustDomain, sub); err != nil || name == "" {
		return "", fmt.Errorf("%w: name %q: %v", errBadInput, name, err)
	}
	return sub, nil
}

// peerGeneration is the attestation generation in the caller's leaf.
func peerGeneration(ctx context.Context) (uint64, bool, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, false, errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return 0, false, errors.New("no client certificate")
	}
	return ca.AttestationGeneration(ti.State.PeerCertificates[0])
}

// checkCredential refuses an agent's or named operator's call when its
// credential is not the subject's current attestation, or the subject is
// evicted or banned, from this node's state (authn.authorize runs it on
// every call, unary and streaming, on every node).
func (s *Server) checkCredential(ctx context.Context, method string, c caller) error {
	subject := callerSubject(c)
	reg := s.registry()
	if subject == "" || reg == nil {
		return nil
	}
	gen, hasGen, err := peerGeneration(ctx)
	if err == nil {
		err = reg.CheckCredential(ctx, subject, gen, hasGen)
	} else {
		err = fmt.Errorf("%w: %w", ca.ErrPermissionDenied, err)
	}
	if err == nil {
		return nil
	}
	code := codeOf(err) // recorded in the decision log by the auth interceptor (decisions.go)
	s.log.InfoContext(ctx, "credential refused", "caller", c.id.String(), "method", method, "err", err)
	return status.Error(code, publicMessage(err))
}

// attest consumes the token: through the registry (bumping the subject's
// generation) when there is one.
func (s *Server) attest(ctx context.Context, tokenHash string) (string, uint64, error) {
	if reg := s.registry(); reg != nil {
		return reg.Attest(ctx, tokenHash)
	}
	sub, err := s.cfg.State.ConsumeToken(ctx, tokenHash)
	return sub, 0, err
}

// mintSubject issues id's SVID bound to gen (when gen > 0 and the issuer
// can) and notes it in the registry.
func (s *Server) mintSubject(ctx context.Context, caller, id spiffeid.ID, subject string, csr []byte, gen uint64) (ca.Result, error) {
	ai, ok := s.cfg.Issuer.(AttestedIssuer)
	if gen == 0 || !ok {
		return s.cfg.Issuer.MintFor(ctx, caller, id, csr, s.cfg.AgentTTL)
	}
	res, err := ai.MintAttested(ctx, caller, id, csr, s.cfg.AgentTTL, gen)
	if err != nil {
		return res, err
	}
	if reg := s.registry(); reg != nil {
		// Informational (list/show): the SVID is committed already.
		if err := reg.AgentRenewed(ctx, subject, gen, res.Record.Serial, res.Record.NotAfter); err != nil {
			s.log.WarnContext(ctx, "could not record the renewal in the agent registry", "subject", subject, "err", err)
		}
	}
	return res, nil
}

// renewSelf renews the caller's own SVID at its current generation
// (checked by checkCredential before the call reached here).
func (s *Server) renewSelf(ctx context.Context, c caller, csr []byte) (ca.Result, error) {
	gen, _, err := peerGeneration(ctx)
	if err != nil {
		return ca.Result{}, fmt.Errorf("%w: %w", ca.ErrPermissionDenied, err)
	}
	return s.mintSubject(ctx, c.id, c.id, callerSubject(c), csr, gen)
}

type operatorService struct {
	tier0v1.UnimplementedOperatorServer
	s *Server
}

// RenewOperator renews a named operator's or auditor's SVID.
func (o *operatorService) RenewOperator(ctx context.Context, req *tier0v1.RenewAgentRequest) (*tier0v1.RenewAgentResponse, error) {
	const method = "RenewOperator"
	s := o.s
	defer s.observe(method, time.Now())
	c := callerFrom(ctx)
	if callerSubject(c) == "" {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: %s is renewed by its server (only named operators renew here)", ca.ErrPermissionDenied, c.id))
	}
	res, err := s.renewSelf(ctx, c, req.GetCsr())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "operator credential renewed", "by", c.id.String(), "serial", res.Record.Serial)
	return &tier0v1.RenewAgentResponse{Chain: res.Chain}, nil
}

type agentAdminService struct {
	tier0v1.UnimplementedAgentAdminServer
	s *Server
}

var errNoRegistry = fmt.Errorf("agent registry: %w", ha.ErrUnavailable)

func (s *Server) agentInfo(a ha.Agent) *tier0v1.AgentInfo {
	out := &tier0v1.AgentInfo{Name: a.Subject, Generation: a.Generation, State: a.State, Selectors: a.Selectors,
		AttestedNode: a.AttestedNode, Serial: a.Serial, RenewedNode: a.RenewedNode, StateBy: a.StateBy,
		AttestedAt: unix(a.AttestedAt), NotAfter: unix(a.NotAfter), RenewedAt: unix(a.RenewedAt), StateAt: unix(a.StateAt)}
	switch {
	case strings.HasPrefix(a.Subject, AdminTokenPrefix):
		out.Kind, out.Name = tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, strings.TrimPrefix(a.Subject, AdminTokenPrefix)
	case strings.HasPrefix(a.Subject, AuditorTokenPrefix):
		out.Kind, out.Name = tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR, strings.TrimPrefix(a.Subject, AuditorTokenPrefix)
	}
	if id, err := subjectID(s.cfg.TrustDomain, a.Subject); err == nil {
		out.SpiffeId = id.String()
	}
	return out
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (a *agentAdminService) ListAgents(ctx context.Context, req *tier0v1.ListAgentsRequest) (*tier0v1.ListAgentsResponse, error) {
	s := a.s
	reg := s.registry()
	if reg == nil {
		return nil, s.toStatus(ctx, "ListAgents", errNoRegistry)
	}
	out := &tier0v1.ListAgentsResponse{}
	for _, ag := range reg.Agents() {
		info := s.agentInfo(ag)
		if req.GetAllKinds() || info.GetKind() == req.GetKind() {
			out.Agents = append(out.Agents, info)
		}
	}
	return out, nil
}

func (a *agentAdminService) GetAgent(ctx context.Context, req *tier0v1.GetAgentRequest) (*tier0v1.AgentInfo, error) {
	const method = "GetAgent"
	s := a.s
	reg := s.registry()
	if reg == nil {
		return nil, s.toStatus(ctx, method, errNoRegistry)
	}
	sub, err := s.resolveSubject(req.GetName(), req.GetKind())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	ag, ok := reg.Agent(sub)
	if !ok {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%s has never attested: %w", req.GetName(), ha.ErrNotFound))
	}
	return s.agentInfo(ag), nil
}

func (a *agentAdminService) SetAgentState(ctx context.Context, req *tier0v1.SetAgentStateRequest) (*tier0v1.AgentInfo, error) {
	const method = "SetAgentState"
	s := a.s
	reg := s.registry()
	if reg == nil {
		return nil, s.toStatus(ctx, method, errNoRegistry)
	}
	sub, err := s.resolveSubject(req.GetName(), req.GetKind())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	by := callerFrom(ctx).id.String()
	ag, err := reg.SetAgentState(ctx, sub, req.GetOp(), by)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.WarnContext(ctx, "agent "+req.GetOp(), "subject", sub, "generation", ag.Generation, "state", ag.State, "by", by)
	return s.agentInfo(ag), nil
}

func (a *agentAdminService) CreateToken(ctx context.Context, req *tier0v1.CreateTokenRequest) (*tier0v1.CreateJoinTokenResponse, error) {
	const method = "CreateToken"
	s := a.s
	if req.GetName() == "" {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: name is required", errBadInput))
	}
	sub := kindSubject(req.GetKind(), req.GetName())
	if _, err := subjectID(s.cfg.TrustDomain, sub); err != nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: name: %v", errBadInput, err))
	}
	return s.createToken(ctx, method, sub, req.GetTtlSeconds())
}

// createToken makes a join token for subject, recording its creator when
// the registry can.
func (s *Server) createToken(ctx context.Context, method, subject string, ttlSeconds int64) (*tier0v1.CreateJoinTokenResponse, error) {
	ttl := time.Duration(ttlSeconds) * time.Second
	if ttl == 0 {
		ttl = s.cfg.TokenTTL
	}
	if ttl < time.Minute || ttl > s.cfg.MaxTokenTTL {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: token ttl %v outside bounds [1m0s, %v]", errBadInput, ttl, s.cfg.MaxTokenTTL))
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	exp := s.cfg.Clock().Add(ttl).Truncate(time.Second)
	by := callerFrom(ctx).id.String()
	var err error
	if reg := s.registry(); reg != nil {
		err = reg.CreateTokenBy(ctx, HashToken(token), subject, exp, by)
	} else {
		err = s.cfg.State.CreateToken(ctx, HashToken(token), subject, exp)
	}
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "join token created", "for", subject, "hash_prefix", HashToken(token)[:12], "expires", exp, "by", by)
	return &tier0v1.CreateJoinTokenResponse{Token: token, ExpiresAt: exp.Unix()}, nil
}

func (a *agentAdminService) ListTokens(ctx context.Context, _ *tier0v1.ListTokensRequest) (*tier0v1.ListTokensResponse, error) {
	s := a.s
	reg := s.registry()
	if reg == nil {
		return nil, s.toStatus(ctx, "ListTokens", errNoRegistry)
	}
	out := &tier0v1.ListTokensResponse{}
	for _, t := range reg.Tokens() {
		out.Tokens = append(out.Tokens, s.tokenInfo(t))
	}
	return out, nil
}

func (s *Server) tokenInfo(t ha.TokenInfo) *tier0v1.TokenInfo {
	sub := t.Subject
	if id, err := subjectID(s.cfg.TrustDomain, t.Subject); err == nil {
		sub = id.String()
	}
	return &tier0v1.TokenInfo{HashPrefix: t.Hash[:12], Subject: sub, ExpiresAt: t.ExpiresAt.Unix(), Used: t.Used,
		Creator: t.Creator, CreatedAt: unix(t.CreatedAt)}
}

func (a *agentAdminService) RevokeToken(ctx context.Context, req *tier0v1.RevokeTokenRequest) (*tier0v1.TokenInfo, error) {
	const method = "RevokeToken"
	s := a.s
	reg := s.registry()
	if reg == nil {
		return nil, s.toStatus(ctx, method, errNoRegistry)
	}
	p := strings.ToLower(req.GetHashPrefix())
	if validHexPrefix(p) != nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: hash prefix %q: want 8..64 hex digits (tier0 token list)", errBadInput, req.GetHashPrefix()))
	}
	by := callerFrom(ctx).id.String()
	t, err := reg.RevokeToken(ctx, p, by)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.WarnContext(ctx, "join token revoked", "for", t.Subject, "hash_prefix", t.Hash[:12], "by", by)
	return s.tokenInfo(t), nil
}

func validHexPrefix(p string) error {
	if len(p) < 8 || len(p) > 64 {
		return errBadInput
	}
	for _, c := range p {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return errBadInput
		}
	}
	return nil
}

// readOnly are the operator methods that change nothing (not logged by
// logOperatorCall).
var readOnly = map[string]bool{"ListAgents": true, "GetAgent": true, "ListTokens": true, "ListEntries": true,
	"ListCARoots": true, "ListFederations": true, "ClusterStatus": true, "ListRecords": true, "ListDecisions": true,
	"VerifyChain": true, "CreateBackup": true}

// logOperatorCall logs every state-changing call of an operator (the
// bootstrap admin or a named one) with the caller's SPIFFE ID and outcome:
// who did what is on record on the node that served it.
func (s *Server) logOperatorCall(ctx context.Context, fullMethod string, err error) {
	c := callerFrom(ctx)
	if c.role != roles.Admin {
		return
	}
	m := fullMethod[strings.LastIndexByte(fullMethod, '/')+1:]
	if readOnly[m] {
		return
	}
	s.log.InfoContext(ctx, "operator call", "method", fullMethod, "by", c.id.String(), "code", status.Code(err).String())
}
