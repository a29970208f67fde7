package clienttest

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// Server is a fake tier0 server: Bootstrap and Agent services backed by a
// CA, with default-deny authorization of agents by their entries.
type Server struct {
	tier0v1.UnimplementedBootstrapServer
	tier0v1.UnimplementedAgentServer

	CA       *CA
	AgentTTL time.Duration // lifetime of agent SVIDs; default 1h

	mu      sync.Mutex
	tokens  map[string]string           // join token -> agent name
	evid    map[string]string           // node attestation evidence -> agent name
	entries map[string][]*tier0v1.Entry // agent name -> entries
	deny    map[string]*tier0v1.Status  // spiffe id -> per-item error
	calls   map[string]int              // method name -> count
	hook    func(ctx context.Context, method string) error
	minted  map[string]*tier0v1.MintItem // spiffe id -> last item
}

// NewServer returns a fake server issuing from ca.
func NewServer(ca *CA) *Server {
	return &Server{
		CA: ca, AgentTTL: time.Hour,
		tokens: map[string]string{}, evid: map[string]string{}, entries: map[string][]*tier0v1.Entry{},
		deny: map[string]*tier0v1.Status{}, calls: map[string]int{}, minted: map[string]*tier0v1.MintItem{},
	}
}

// Start serves on loopback with the node SVID spiffe://TD/tier0/node/<node>.
func (s *Server) Start(t testing.TB, node string) string {
	t.Helper()
	id, err := roles.NodeID(s.CA.TD, node)
	if err != nil {
		t.Fatal(err)
	}
	return Serve(t, s.CA.Issue(t, id, time.Hour), func(g *grpc.Server) {
		tier0v1.RegisterBootstrapServer(g, s)
		tier0v1.RegisterAgentServer(g, s)
	})
}

// AddToken registers a one-time join token for agent.
func (s *Server) AddToken(token, agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = agent
}

// AddEntry grants spiffeID to agent.
func (s *Server) AddEntry(agent, spiffeID string, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[agent] = append(s.entries[agent], &tier0v1.Entry{
		Id: fmt.Sprintf("e%d", len(s.entries[agent])+1), Agent: agent, SpiffeId: spiffeID, TtlSeconds: int64(ttl / time.Second),
	})
}

// Deny makes minting spiffeID fail with code and msg.
func (s *Server) Deny(spiffeID string, code codes.Code, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny[spiffeID] = &tier0v1.Status{Code: int32(code), Message: msg}
}

// SetHook installs a function run before every call; a non-nil error is
// returned to the caller instead of handling the call.
func (s *Server) SetHook(h func(ctx context.Context, method string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = h
}

// Calls returns how many times method (e.g. "RenewAgent") was called.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Minted returns the last mint item received for spiffeID.
func (s *Server) Minted(spiffeID string) *tier0v1.MintItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.minted[spiffeID]
}

func (s *Server) enter(ctx context.Context, method string) error {
	s.mu.Lock()
	s.calls[method]++
	h := s.hook
	s.mu.Unlock()
	if h != nil {
		return h(ctx, method)
	}
	return nil
}

// agent authenticates the caller as an agent of the CA's trust domain.
func (s *Server) agent(ctx context.Context) (spiffeid.ID, string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "client certificate: no client certificate presented")
	}
	id, _, err := x509svid.Verify(ti.State.PeerCertificates, s.CA.Bundle)
	if err != nil {
		return spiffeid.ID{}, "", status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	name, ok := roles.AgentName(s.CA.TD, id)
	if !ok {
		return spiffeid.ID{}, "", status.Errorf(codes.PermissionDenied, "%s may not call the agent service", id)
	}
	return id, name, nil
}

// AttestJoinToken implements tier0v1.BootstrapServer.
func (s *Server) AttestJoinToken(ctx context.Context, req *tier0v1.AttestJoinTokenRequest) (*tier0v1.AttestJoinTokenResponse, error) {
	if err := s.enter(ctx, "AttestJoinToken"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	agent, ok := s.tokens[req.GetToken()]
	delete(s.tokens, req.GetToken())
	s.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "join token is invalid, expired or already used")
	}
	id, err := roles.AgentID(s.CA.TD, agent)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := s.CA.SignCSR(req.GetCsr(), id, s.AgentTTL)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &tier0v1.AttestJoinTokenResponse{Chain: chain, SpiffeId: id.String()}, nil
}

// AddEvidence makes evidence, sent with any attestor, attest agent once
// (the fake verifies nothing else).
func (s *Server) AddEvidence(evidence, agent string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evid[evidence] = agent
}

// AttestAgent implements tier0v1.BootstrapServer: node attestation with
// evidence registered by AddEvidence, no challenge; the selector is
// ATTESTOR:test:AGENT.
func (s *Server) AttestAgent(stream tier0v1.Bootstrap_AttestAgentServer) error {
	if err := s.enter(stream.Context(), "AttestAgent"); err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	p := req.GetParams()
	s.mu.Lock()
	agent, ok := s.evid[string(p.GetEvidence())]
	delete(s.evid, string(p.GetEvidence()))
	s.mu.Unlock()
	if !ok {
		return status.Error(codes.PermissionDenied, "attestation denied")
	}
	id, err := roles.AgentID(s.CA.TD, agent)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	chain, err := s.CA.SignCSR(p.GetCsr(), id, s.AgentTTL)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return stream.Send(&tier0v1.AttestAgentResponse{Chain: chain, SpiffeId: id.String(), Selectors: []string{p.GetAttestor() + ":test:" + agent}})
}

// RenewAgent implements tier0v1.AgentServer.
func (s *Server) RenewAgent(ctx context.Context, req *tier0v1.RenewAgentRequest) (*tier0v1.RenewAgentResponse, error) {
	if err := s.enter(ctx, "RenewAgent"); err != nil {
		return nil, err
	}
	id, _, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	chain, err := s.CA.SignCSR(req.GetCsr(), id, s.AgentTTL)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &tier0v1.RenewAgentResponse{Chain: chain}, nil
}

// ListAuthorizedEntries implements tier0v1.AgentServer.
func (s *Server) ListAuthorizedEntries(ctx context.Context, _ *tier0v1.ListAuthorizedEntriesRequest) (*tier0v1.ListAuthorizedEntriesResponse, error) {
	if err := s.enter(ctx, "ListAuthorizedEntries"); err != nil {
		return nil, err
	}
	_, name, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &tier0v1.ListAuthorizedEntriesResponse{Entries: s.entries[name]}, nil
}

// MintX509SVIDs implements tier0v1.AgentServer.
func (s *Server) MintX509SVIDs(ctx context.Context, req *tier0v1.MintX509SVIDsRequest) (*tier0v1.MintX509SVIDsResponse, error) {
	if err := s.enter(ctx, "MintX509SVIDs"); err != nil {
		return nil, err
	}
	_, name, err := s.agent(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &tier0v1.MintX509SVIDsResponse{}
	for _, item := range req.GetItems() {
		resp.Results = append(resp.Results, s.mint(name, item))
	}
	return resp, nil
}

func (s *Server) mint(agent string, item *tier0v1.MintItem) *tier0v1.MintResult {
	fail := func(c codes.Code, msg string) *tier0v1.MintResult {
		return &tier0v1.MintResult{Error: &tier0v1.Status{Code: int32(c), Message: msg}}
	}
	csr, err := x509.ParseCertificateRequest(item.GetCsr())
	if err != nil || len(csr.URIs) != 1 {
		return fail(codes.InvalidArgument, "csr must be DER PKCS#10 with exactly one URI SAN")
	}
	leaf, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return fail(codes.InvalidArgument, err.Error())
	}
	s.minted[leaf.String()] = item
	if st, ok := s.deny[leaf.String()]; ok {
		return &tier0v1.MintResult{Error: st, SpiffeId: leaf.String()}
	}
	var entry *tier0v1.Entry
	for _, e := range s.entries[agent] {
		if e.GetSpiffeId() == leaf.String() {
			entry = e
		}
	}
	if entry == nil {
		return &tier0v1.MintResult{SpiffeId: leaf.String(), Error: &tier0v1.Status{
			Code: int32(codes.PermissionDenied), Message: fmt.Sprintf("no entry grants %s to agent %s", leaf, agent)}}
	}
	ttl := time.Duration(entry.GetTtlSeconds()) * time.Second
	if item.GetTtlSeconds() != 0 {
		ttl = time.Duration(item.GetTtlSeconds()) * time.Second
	}
	chain, err := s.CA.SignCSR(item.GetCsr(), leaf, ttl)
	if err != nil {
		return fail(codes.InvalidArgument, err.Error())
	}
	return &tier0v1.MintResult{Chain: chain, SpiffeId: leaf.String()}
}

// GetBundle implements tier0v1.AgentServer.
func (s *Server) GetBundle(ctx context.Context, _ *tier0v1.GetBundleRequest) (*tier0v1.GetBundleResponse, error) {
	if err := s.enter(ctx, "GetBundle"); err != nil {
		return nil, err
	}
	if _, _, err := s.agent(ctx); err != nil {
		return nil, err
	}
	return &tier0v1.GetBundleResponse{X509Authorities: [][]byte{s.CA.Root.Raw}, Sequence: 1, TrustDomain: s.CA.TD.Name()}, nil
}
