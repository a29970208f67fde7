package api

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/internal/roles"
)

// RetryAfterKey is the trailer that carries a retry hint in milliseconds on
// ResourceExhausted; the client package reads it.
const RetryAfterKey = client.RetryAfterKey

const maxTokenLen = 256

type bootstrapService struct {
	tier0v1.UnimplementedBootstrapServer
	s *Server
}

// HashToken is how join tokens are stored: hex SHA-256 of the token.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

func (b *bootstrapService) AttestJoinToken(ctx context.Context, req *tier0v1.AttestJoinTokenRequest) (*tier0v1.AttestJoinTokenResponse, error) {
	const method = "AttestJoinToken"
	s := b.s
	defer s.observe(method, time.Now())
	if req.GetToken() == "" || len(req.GetToken()) > maxTokenLen {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: join token missing or too long", errBadInput))
	}
	if len(req.GetCsr()) == 0 {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: csr is required", errBadInput))
	}
	// Check the CSR before burning the token, so a bad CSR can be retried.
	if err := precheckCSR(req.GetCsr()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	agent, gen, err := s.attest(ctx, HashToken(req.GetToken())) // agentadmin.go
	if err != nil {
		s.log.InfoContext(ctx, "join token refused", "err", err)
		return nil, s.toStatus(ctx, method, err)
	}
	id, err := subjectID(s.cfg.TrustDomain, agent)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	res, err := s.mintSubject(ctx, spiffeid.ID{}, id, agent, req.GetCsr(), gen)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.metrics.issued.WithLabelValues("agent").Inc()
	s.log.InfoContext(ctx, "agent attested with join token", "agent", id.String(), "generation", gen, "serial", res.Record.Serial)
	return &tier0v1.AttestJoinTokenResponse{Chain: res.Chain, SpiffeId: id.String()}, nil
}

// NodeTokenPrefix marks a join token for a cluster node: the token's
// subject is NodeTokenPrefix+NODE. "/" cannot occur in an agent name, so
// an agent token can never yield a node SVID.
const NodeTokenPrefix = "tier0-node/" //nolint:gosec // G101: a name prefix, not a credential

// tokenSubject is the SPIFFE ID a consumed join token attests: an agent's,
// or a node's for a node token.
func tokenSubject(td spiffeid.TrustDomain, subject string) (spiffeid.ID, error) {
	if node, ok := strings.CutPrefix(subject, NodeTokenPrefix); ok {
		return roles.NodeID(td, node)
	}
	return roles.AgentID(td, subject)
}

// precheckCSR is a cheap syntax and signature check; ca does the full one.
func precheckCSR(der []byte) error {
	if len(der) > 16<<10 {
		return fmt.Errorf("%w: csr larger than 16 KiB", ca.ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ca.ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return fmt.Errorf("%w: signature: %v", ca.ErrInvalidCSR, err)
	}
	return nil
}

type agentService struct {
	tier0v1.UnimplementedAgentServer
	s *Server
}

func (a *agentService) RenewAgent(ctx context.Context, req *tier0v1.RenewAgentRequest) (*tier0v1.RenewAgentResponse, error) {
	const method = "RenewAgent"
	s := a.s
	defer s.observe(method, time.Now())
	c := callerFrom(ctx)
	res, err := s.renewSelf(ctx, c, req.GetCsr()) // agentadmin.go
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.metrics.issued.WithLabelValues("agent").Inc()
	return &tier0v1.RenewAgentResponse{Chain: res.Chain}, nil
}

func (a *agentService) ListAuthorizedEntries(ctx context.Context, _ *tier0v1.ListAuthorizedEntriesRequest) (*tier0v1.ListAuthorizedEntriesResponse, error) {
	c := callerFrom(ctx)
	entries := a.s.cfg.State.EntriesFor(c.name)
	out := make([]*tier0v1.Entry, 0, len(entries))
	for _, e := range entries {
		out = append(out, entryToPB(e))
	}
	return &tier0v1.ListAuthorizedEntriesResponse{Entries: out}, nil
}

func (a *agentService) GetBundle(context.Context, *tier0v1.GetBundleRequest) (*tier0v1.GetBundleResponse, error) {
	b := a.s.cfg.State.Bundle()
	resp := &tier0v1.GetBundleResponse{X509Authorities: b.Roots, Sequence: b.Sequence, TrustDomain: a.s.cfg.TrustDomain.Name()}
	a.s.addTrust(resp)
	a.s.addTaints(resp)
	return resp, nil
}

func (a *agentService) MintX509SVIDs(ctx context.Context, req *tier0v1.MintX509SVIDsRequest) (*tier0v1.MintX509SVIDsResponse, error) {
	const method = "MintX509SVIDs"
	s := a.s
	defer s.observe(method, time.Now())
	items := req.GetItems()
	if len(items) == 0 {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: no items", errBadInput))
	}
	if len(items) > s.cfg.MaxBatch {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: %d items, at most %d per call", ca.ErrBatchTooLarge, len(items), s.cfg.MaxBatch))
	}
	reqs := make([]ca.Request, len(items))
	var prio int64
	for i, it := range items {
		ttl := it.GetTtlSeconds()
		if ttl < 0 || ttl > int64(24*time.Hour/time.Second) {
			// Let ca name the bounds; just keep the Duration from overflowing.
			ttl = int64(24 * time.Hour / time.Second)
		}
		reqs[i] = ca.Request{CSR: it.GetCsr(), TTL: time.Duration(ttl) * time.Second, IdemKey: it.GetIdempotencyKey()}
		if na := it.GetRenewingNotAfter(); na > 0 && (prio == 0 || na < prio) {
			prio = na
		}
	}
	release, hint, err := s.adm.acquireN(ctx, prio, len(items))
	if err != nil {
		if hint > 0 {
			// The hint in the trailer (older clients) and as RetryInfo,
			// as the tap sends it (tap.go).
			_ = grpc.SetTrailer(ctx, metadata.Pairs(RetryAfterKey, strconv.FormatInt(hint.Milliseconds(), 10)))
			s.metrics.errors.WithLabelValues(method, codes.ResourceExhausted.String()).Inc()
			return nil, overloadedStatus(hint).Err()
		}
		return nil, s.toStatus(ctx, method, err)
	}
	defer release()

	c := callerFrom(ctx)
	results, err := s.cfg.Issuer.MintBatch(ctx, c.id, reqs)
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	// One decision per requested SPIFFE ID (decisions.go), whatever the
	// call answers below.
	for _, r := range results {
		s.recordItem(c, r.ID, r.EntryID, r.Err)
	}
	markRecorded(ctx)
	if err := signerUnavailable(itemErrors(results)); err != nil {
		// The CA key cannot sign: not about any item. The call answers
		// Unavailable with the retry hint, which clients hold to.
		s.metrics.itemErrors.WithLabelValues(codes.Unavailable.String()).Add(float64(len(results)))
		return nil, s.toStatus(ctx, method, err)
	}
	out := &tier0v1.MintX509SVIDsResponse{Results: make([]*tier0v1.MintResult, len(results))}
	issued, replayed := 0, 0
	for i, r := range results {
		if r.Err != nil {
			code := codeOf(r.Err)
			s.metrics.itemErrors.WithLabelValues(code.String()).Inc()
			msg := r.Err.Error()
			if st, ok := status.FromError(s.itemStatus(ctx, c, r.Err)); ok {
				msg = st.Message()
			}
			out.Results[i] = &tier0v1.MintResult{Error: &tier0v1.Status{Code: int32(code), Message: msg}}
			continue
		}
		if r.Replayed {
			replayed++
		} else {
			issued++
		}
		out.Results[i] = &tier0v1.MintResult{Chain: r.Chain, SpiffeId: r.ID.String()}
	}
	s.metrics.issued.WithLabelValues("workload").Add(float64(issued))
	s.metrics.issued.WithLabelValues("workload_replayed").Add(float64(replayed))
	return out, nil
}

// itemStatus logs a per-item failure the way toStatus does for a call
// (a signer failure also sets the call's retry hint).
func (s *Server) itemStatus(ctx context.Context, c caller, err error) error {
	code := codeOf(err)
	if code == codes.Internal {
		s.lines.Log(ctx, slog.LevelError, "mint item failed", "internal", "mint item failed", slog.String("caller", c.id.String()), slog.Any("err", err))
		return status.Error(code, "internal error")
	}
	s.noteSignerError(ctx, "MintX509SVIDs", err)
	return status.Error(code, publicMessage(err))
}

func itemErrors(results []ca.Result) []error {
	errs := make([]error, len(results))
	for i, r := range results {
		errs[i] = r.Err
	}
	return errs
}

func (s *Server) observe(method string, start time.Time) {
	s.metrics.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
}
