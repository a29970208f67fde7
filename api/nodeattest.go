package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/nodeattest"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/storage"
)

// NodeAttestors are the enabled node attestors (*nodeattest.Registry).
type NodeAttestors interface {
	Get(name string) (nodeattest.Attestor, bool)
}

// AttestationRecorder records an attestation's outcome in the replicated
// state, refusing replayed evidence with ha.ErrReplayed (*ha.Node).
type AttestationRecorder interface {
	RecordAttestation(ctx context.Context, a ha.Attestation) error
}

// subjectAttester is the agent registry's entry point for attestations
// the server verified itself (*ha.Node; ha/agents_node.go).
type subjectAttester interface {
	AttestSubject(ctx context.Context, subject string, selectors []string) (uint64, error)
}

// attestTimeout bounds a whole node attestation (challenge included).
const attestTimeout = 30 * time.Second

// AttestAgent runs a node attestation: verify the evidence with the named
// attestor (answering its challenge on the stream), record the outcome
// (replay keys, selectors) through raft, then mint the agent SVID. Allow
// and deny both go to the decision log with the attestor and the reason.
func (b *bootstrapService) AttestAgent(stream tier0v1.Bootstrap_AttestAgentServer) error {
	const method = "AttestAgent"
	s := b.s
	defer s.observe(method, time.Now())
	ctx, cancel := context.WithTimeout(stream.Context(), attestTimeout)
	defer cancel()
	req, err := stream.Recv()
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return err // the request was read and refused (e.g. a field over its limit)
		}
		return status.Error(codes.Canceled, "api: attest agent: no request")
	}
	p := req.GetParams()
	if p == nil || p.GetAttestor() == "" || len(p.GetAttestor()) > 64 {
		return s.toStatus(ctx, method, fmt.Errorf("%w: params with an attestor name are required first", errBadInput))
	}
	name := p.GetAttestor()
	from := "unknown"
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		from = pr.Addr.String()
	}
	caller := "attestor:" + name + " from " + from
	noteSubject(ctx, caller, "") // every refusal below is recorded by the interceptor (decisions.go)
	label := "other"             // attestor label: only known names, so callers cannot mint series
	if isAttestor(name) {
		label = name
	}
	deny := func(requested string, err error) error {
		st := attestStatus(err)
		s.metrics.attestations.WithLabelValues(label, outcome(st.Code())).Inc()
		if st.Code() == codes.Internal {
			err = s.toStatus(ctx, method, err) // logged with the detail, "internal error" out
			st, _ = status.FromError(err)
		} else {
			s.metrics.errors.WithLabelValues(method, st.Code().String()).Inc()
			s.log.InfoContext(ctx, "node attestation refused", "attestor", name, "from", from, "code", st.Code().String(), "reason", st.Message())
		}
		noteSubject(ctx, caller, requested)
		return st.Err()
	}
	if len(p.GetEvidence()) == 0 || len(p.GetEvidence()) > nodeattest.MaxEvidence {
		return deny("", fmt.Errorf("%w: evidence missing or larger than %d bytes", nodeattest.ErrBadEvidence, nodeattest.MaxEvidence))
	}
	if err := precheckCSR(p.GetCsr()); err != nil {
		return s.toStatus(ctx, method, err)
	}
	var att nodeattest.Attestor
	ok := false
	if s.cfg.NodeAttestors != nil {
		att, ok = s.cfg.NodeAttestors.Get(name)
	}
	if !ok || s.cfg.Attestations == nil {
		return deny("", fmt.Errorf("%w: attestor %q is not enabled on this server", nodeattest.ErrDenied, name))
	}
	challenge := func(ctx context.Context, c []byte) ([]byte, error) {
		if err := stream.Send(&tier0v1.AttestAgentResponse{Challenge: c}); err != nil {
			return nil, fmt.Errorf("%w: send challenge: %v", nodeattest.ErrDenied, err)
		}
		r, err := stream.Recv()
		if err != nil || len(r.GetChallengeResponse()) == 0 || len(r.GetChallengeResponse()) > 8<<10 {
			return nil, fmt.Errorf("%w: no answer to the challenge", nodeattest.ErrDenied)
		}
		return r.GetChallengeResponse(), nil
	}
	res, err := att.Attest(ctx, p.GetEvidence(), challenge)
	if err != nil {
		return deny("", err)
	}
	id, err := roles.AgentID(s.cfg.TrustDomain, res.AgentName)
	if err != nil {
		return deny("", fmt.Errorf("%w: agent name %q: %v", nodeattest.ErrDenied, res.AgentName, err))
	}
	keys := make([]ha.ReplayKey, len(res.Replay))
	for i, k := range res.Replay {
		keys[i] = ha.ReplayKey{Key: k.Key, Until: k.Until}
	}
	if err := s.cfg.Attestations.RecordAttestation(ctx, ha.Attestation{Agent: res.AgentName, Attestor: name, Selectors: res.Selectors, Keys: keys}); err != nil {
		return deny(id.String(), err)
	}
	// Then the agent registry (ha/agents.go): refuses a banned agent and
	// bumps its attestation generation, which the SVID carries. After the
	// replay check, so that replayed evidence cannot bump the generation
	// of the agent it was taken from (and so revoke its SVID).
	var gen uint64
	if reg, ok := s.cfg.State.(subjectAttester); ok {
		if gen, err = reg.AttestSubject(ctx, res.AgentName, append([]string{"attestor:" + name}, res.Selectors...)); err != nil {
			return deny(id.String(), err)
		}
	}
	out, err := s.mintSubject(ctx, spiffeid.ID{}, id, res.AgentName, p.GetCsr(), gen)
	if err != nil {
		return s.toStatus(ctx, method, err)
	}
	s.metrics.issued.WithLabelValues("agent").Inc()
	s.metrics.attestations.WithLabelValues(label, "allowed").Inc()
	if s.cfg.Decisions != nil {
		s.cfg.Decisions.Decide(storage.Decision{Caller: caller, Requested: id.String(), Allowed: true, Code: codes.OK.String(),
			Reason: name + ": " + res.Detail + "; selectors " + strings.Join(res.Selectors, ",")})
	}
	s.log.InfoContext(ctx, "agent attested", "attestor", name, "agent", id.String(), "selectors", res.Selectors, "serial", out.Record.Serial)
	return stream.Send(&tier0v1.AttestAgentResponse{Chain: out.Chain, SpiffeId: id.String(), Selectors: res.Selectors})
}

func outcome(c codes.Code) string {
	switch c {
	case codes.PermissionDenied:
		return "denied"
	case codes.InvalidArgument:
		return "invalid"
	case codes.Unavailable:
		return "unavailable"
	}
	return "error"
}

// attestStatus maps an attestation failure to its status: refused
// evidence (bad signature, expired, not allowed, replayed) is
// PermissionDenied, unparseable evidence InvalidArgument, unreachable
// trust anchors or raft Unavailable.
func attestStatus(err error) *status.Status {
	switch {
	case errors.Is(err, nodeattest.ErrDenied), errors.Is(err, ha.ErrReplayed), errors.Is(err, ha.ErrDenied):
		return status.New(codes.PermissionDenied, publicMessage(err))
	case errors.Is(err, nodeattest.ErrBadEvidence):
		return status.New(codes.InvalidArgument, publicMessage(err))
	case errors.Is(err, nodeattest.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.Unavailable, publicMessage(err))
	}
	if c := codeOf(err); c != codes.Internal {
		return status.New(c, publicMessage(err))
	}
	return status.New(codes.Internal, err.Error())
}

// nodeSelectors checks a CreateEntry's node selectors (nil: an agent
// entry): exclusive with agent, each ATTESTOR:KIND:VALUE of a known
// attestor, at most 16.
func nodeSelectors(req *tier0v1.CreateEntryRequest) ([]string, error) {
	ns := req.GetNodeSelectors()
	if len(ns) == 0 {
		return nil, nil
	}
	if req.GetAgent() != "" {
		return nil, fmt.Errorf("%w: an entry has an agent or node selectors, not both", errBadInput)
	}
	if len(ns) > 16 {
		return nil, fmt.Errorf("%w: at most 16 node selectors", errBadInput)
	}
	out := make([]string, 0, len(ns))
	for _, sel := range ns {
		parts := strings.SplitN(sel, ":", 3)
		if len(parts) != 3 || parts[1] == "" || parts[2] == "" || len(sel) > 1024 || !isAttestor(parts[0]) {
			return nil, fmt.Errorf("%w: node selector %q: want ATTESTOR:KIND:VALUE with attestor one of %s", errBadInput, sel, strings.Join(nodeattest.Names, ", "))
		}
		out = append(out, sel)
	}
	return out, nil
}

func isAttestor(name string) bool {
	for _, n := range nodeattest.Names {
		if n == name {
			return true
		}
	}
	return false
}
