package loadtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// SPIREAgent is an agent attested to a SPIREServer with a join token and
// connected over mTLS with its agent SVID, as spire-agent is when it
// renews its workloads' SVIDs with svid.v1.SVID/BatchNewX509SVID.
type SPIREAgent struct {
	ID       spiffeid.ID
	EntryIDs []string // one per registered workload, in the order of the CSRs given
	CSRs     [][]byte
	conn     *grpc.ClientConn
}

// Client is the SVID API on the agent's mTLS connection.
func (a *SPIREAgent) Client() svidv1.SVIDClient { return svidv1.NewSVIDClient(a.conn) }

// Close closes the agent's connection.
func (a *SPIREAgent) Close() { a.conn.Close() }

// BatchNew calls BatchNewX509SVID for batch workloads starting at k*batch
// and fails on any item error or empty chain.
func (a *SPIREAgent) BatchNew(ctx context.Context, k, batch int) error {
	req := &svidv1.BatchNewX509SVIDRequest{Params: make([]*svidv1.NewX509SVIDParams, batch)}
	for i := range batch {
		j := (k*batch + i) % len(a.EntryIDs)
		req.Params[i] = &svidv1.NewX509SVIDParams{EntryId: a.EntryIDs[j], Csr: a.CSRs[j]}
	}
	resp, err := a.Client().BatchNewX509SVID(ctx, req)
	if err != nil {
		return err
	}
	if len(resp.GetResults()) != batch {
		return fmt.Errorf("spire: %d results for %d params", len(resp.GetResults()), batch)
	}
	for _, r := range resp.GetResults() {
		if st := r.GetStatus(); st.GetCode() != 0 {
			return fmt.Errorf("spire: item: %s", st.GetMessage())
		}
		if len(r.GetSvid().GetCertChain()) == 0 {
			return errors.New("spire: item without certificate")
		}
	}
	return nil
}

// AttestAgent creates a join token through the admin socket, attests an
// agent with it over TLS on the server's TCP port (verifying the server
// against the bundle), registers one entry per CSR with the agent as
// parent (SPIFFE ID taken from each CSR's URI SAN), then dials the server
// over mTLS with the agent SVID and waits until the agent is authorized
// for every entry (SPIRE's entry cache reloads in the background).
func (s *SPIREServer) AttestAgent(ctx context.Context, csrs [][]byte) (*SPIREAgent, error) {
	if s.TCPAddr == "" {
		return nil, errors.New("loadtest: spire server has no TCP address")
	}
	b, err := bundlev1.NewBundleClient(s.conn).GetBundle(ctx, &bundlev1.GetBundleRequest{})
	if err != nil {
		return nil, fmt.Errorf("loadtest: spire get bundle: %w", err)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	var roots []*x509.Certificate
	for _, a := range b.GetX509Authorities() {
		c, err := x509.ParseCertificate(a.GetAsn1())
		if err != nil {
			return nil, fmt.Errorf("loadtest: spire bundle: %w", err)
		}
		roots = append(roots, c)
	}
	bundle := x509bundle.FromX509Authorities(td, roots)
	serverID := spiffeid.RequireFromPath(td, "/spire/server")

	token := fmt.Sprintf("tier0-bench-%d", time.Now().UnixNano())
	if _, err := agentv1.NewAgentClient(s.conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600, Token: token}); err != nil {
		return nil, fmt.Errorf("loadtest: spire create join token: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	tlsConn, err := grpc.NewClient(s.TCPAddr, grpc.WithTransportCredentials(
		credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(serverID)))))
	if err != nil {
		return nil, err
	}
	svid, err := attestJoinToken(ctx, agentv1.NewAgentClient(tlsConn), token, csr)
	tlsConn.Close()
	if err != nil {
		return nil, err
	}
	chain := make([]*x509.Certificate, 0, len(svid.GetCertChain()))
	for _, der := range svid.GetCertChain() {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("loadtest: spire agent svid: %w", err)
		}
		chain = append(chain, c)
	}
	agentID, err := spiffeid.FromPath(td, svid.GetId().GetPath())
	if err != nil {
		return nil, fmt.Errorf("loadtest: spire agent id: %w", err)
	}
	a := &SPIREAgent{ID: agentID, CSRs: csrs}
	if a.EntryIDs, err = s.registerEntries(ctx, agentID, csrs); err != nil {
		return nil, err
	}
	src := &x509svid.SVID{ID: agentID, Certificates: chain, PrivateKey: crypto.Signer(key)}
	a.conn, err = grpc.NewClient(s.TCPAddr, grpc.WithTransportCredentials(
		credentials.NewTLS(tlsconfig.MTLSClientConfig(src, bundle, tlsconfig.AuthorizeID(serverID)))))
	if err != nil {
		return nil, err
	}
	// Poll until every entry is authorized (the first call of a full batch
	// succeeds), bounded by a deadline.
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = a.BatchNew(cctx, 0, len(csrs))
		cancel()
		if err == nil {
			return a, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.Close()
			return nil, errors.Join(fmt.Errorf("loadtest: spire agent not authorized for its entries: %w", err), ctx.Err())
		}
		time.Sleep(250 * time.Millisecond) // polling SPIRE's entry cache reload
	}
}

func attestJoinToken(ctx context.Context, c agentv1.AgentClient, token string, csr []byte) (*types.X509SVID, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := c.AttestAgent(cctx)
	if err != nil {
		return nil, fmt.Errorf("loadtest: spire attest: %w", err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return nil, fmt.Errorf("loadtest: spire attest send: %w", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, fmt.Errorf("loadtest: spire attest: %w", err)
	}
	_ = stream.CloseSend()
	svid := resp.GetResult().GetSvid()
	if svid == nil {
		return nil, errors.New("loadtest: spire attest: no agent SVID in the response")
	}
	return svid, nil
}

func (s *SPIREServer) registerEntries(ctx context.Context, agent spiffeid.ID, csrs [][]byte) ([]string, error) {
	parent := &types.SPIFFEID{TrustDomain: agent.TrustDomain().Name(), Path: agent.Path()}
	req := &entryv1.BatchCreateEntryRequest{}
	for i, der := range csrs {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil || len(csr.URIs) != 1 {
			return nil, fmt.Errorf("loadtest: spire csr %d: want one URI SAN (%v)", i, err)
		}
		id, err := spiffeid.FromURI(csr.URIs[0])
		if err != nil {
			return nil, fmt.Errorf("loadtest: spire csr %d: %w", i, err)
		}
		req.Entries = append(req.Entries, &types.Entry{
			ParentId:    parent,
			SpiffeId:    &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
			Selectors:   []*types.Selector{{Type: "unix", Value: fmt.Sprintf("uid:%d", 10000+i)}},
			X509SvidTtl: 3600,
		})
	}
	resp, err := entryv1.NewEntryClient(s.conn).BatchCreateEntry(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("loadtest: spire create entries: %w", err)
	}
	ids := make([]string, 0, len(csrs))
	for _, r := range resp.GetResults() {
		if r.GetStatus().GetCode() != 0 {
			return nil, fmt.Errorf("loadtest: spire create entry: %s", r.GetStatus().GetMessage())
		}
		ids = append(ids, r.GetEntry().GetId())
	}
	return ids, nil
}
