package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/redact"
)

// Federation profiles of the SPIFFE bundle endpoint spec.
const (
	ProfileSPIFFE = "https_spiffe"
	ProfileWeb    = "https_web"
)

// MaxBundleBytes bounds a fetched peer bundle.
const MaxBundleBytes = 1 << 20

// FederationStore keeps federation relationships (implemented by *ha.Node).
type FederationStore interface {
	SetFederation(ctx context.Context, f ha.Federation) error
	DeleteFederation(ctx context.Context, trustDomain string) error
	SetFederatedBundle(ctx context.Context, trustDomain string, bundle []byte, refreshHint time.Duration) error
	TrustState() ha.TrustState
}

type federationService struct {
	tier0v1.UnimplementedFederationServer
	s *Server
}

func (f *federationService) SetFederation(ctx context.Context, req *tier0v1.SetFederationRequest) (*tier0v1.SetFederationResponse, error) {
	const method = "SetFederation"
	s := f.s
	if s.cfg.Federation == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: federation is not enabled on this server", ha.ErrUnavailable))
	}
	rel, err := ValidateFederation(s.cfg.TrustDomain, req.GetRelationship())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	if err := s.cfg.Federation.SetFederation(ctx, rel); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "federation set", "trust_domain", rel.TrustDomain, "endpoint", redact.URL(rel.Endpoint), "profile", rel.Profile, "by", callerFrom(ctx).id.String())
	return &tier0v1.SetFederationResponse{}, nil
}

func (f *federationService) DeleteFederation(ctx context.Context, req *tier0v1.DeleteFederationRequest) (*tier0v1.DeleteFederationResponse, error) {
	const method = "DeleteFederation"
	s := f.s
	if s.cfg.Federation == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("%w: federation is not enabled on this server", ha.ErrUnavailable))
	}
	if err := s.cfg.Federation.DeleteFederation(ctx, req.GetTrustDomain()); err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "federation deleted", "trust_domain", redact.Clip(req.GetTrustDomain()), "by", callerFrom(ctx).id.String())
	return &tier0v1.DeleteFederationResponse{}, nil
}

func (f *federationService) ListFederations(ctx context.Context, _ *tier0v1.ListFederationsRequest) (*tier0v1.ListFederationsResponse, error) {
	s := f.s
	if s.cfg.Federation == nil {
		return nil, s.toStatus(ctx, "ListFederations", fmt.Errorf("%w: federation is not enabled on this server", ha.ErrUnavailable))
	}
	out := &tier0v1.ListFederationsResponse{}
	for _, r := range s.cfg.Federation.TrustState().Federations {
		pb := &tier0v1.FederationRelationship{
			TrustDomain: r.TrustDomain, Endpoint: redact.URL(r.Endpoint), Profile: r.Profile, EndpointSpiffeId: r.EndpointSPIFFEID,
			Bundle: r.Bundle, RefreshHintSeconds: int64(r.RefreshHint / time.Second),
		}
		if !r.UpdatedAt.IsZero() {
			pb.UpdatedAt = r.UpdatedAt.Unix()
		}
		if s.cfg.Federator != nil {
			pb.LastError = s.cfg.Federator.LastError(r.TrustDomain)
		}
		out.Relationships = append(out.Relationships, pb)
	}
	return out, nil
}

// ValidateFederation checks a relationship an operator asks for: a foreign
// trust domain, an https endpoint without credentials (a bundle endpoint is
// public; user:pass@ would only end up in logs), a known profile, an
// endpoint SPIFFE ID for https_spiffe, and initial trust that parses as a
// SPIFFE bundle (or PEM roots) of that trust domain. Errors quote at most
// redact.MaxEcho bytes of any field.
func ValidateFederation(own spiffeid.TrustDomain, r *tier0v1.FederationRelationship) (ha.Federation, error) {
	bad := func(format string, a ...any) (ha.Federation, error) {
		return ha.Federation{}, fmt.Errorf("%w: federation: %s", errBadInput, fmt.Sprintf(format, a...))
	}
	if r == nil {
		return bad("relationship is required")
	}
	td, err := ca.ParseTrustDomain(r.GetTrustDomain())
	if err != nil {
		return bad("%v", err)
	}
	if td == own {
		return bad("cannot federate with our own trust domain %s", td)
	}
	u, err := url.Parse(r.GetEndpoint())
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return bad("endpoint %s: want an https:// URL", redact.Quote(redact.URL(r.GetEndpoint())))
	}
	if u.User != nil {
		return bad("endpoint %s: must not carry credentials (user:pass@): a bundle endpoint is public", redact.Quote(redact.URL(r.GetEndpoint())))
	}
	rel := ha.Federation{TrustDomain: td.Name(), Endpoint: u.String(), Profile: r.GetProfile()}
	switch r.GetProfile() {
	case ProfileSPIFFE:
		id, err := ca.ParseID(r.GetEndpointSpiffeId())
		if err != nil {
			return bad("https_spiffe needs --endpoint-spiffe-id: %v", err)
		}
		rel.EndpointSPIFFEID = id.String()
		if len(r.GetBundle()) == 0 {
			return bad("https_spiffe needs initial trust (--bundle) to authenticate the endpoint")
		}
	case ProfileWeb:
	default:
		return bad("profile %s: want https_spiffe or https_web", redact.Quote(r.GetProfile()))
	}
	if len(r.GetBundle()) > 0 {
		b, err := ParsePeerBundle(td, r.GetBundle())
		if err != nil {
			return bad("initial bundle: %v", err)
		}
		raw, err := b.Marshal()
		if err != nil {
			return ha.Federation{}, fmt.Errorf("api: marshal bundle: %w", err)
		}
		rel.Bundle = raw
	}
	return rel, nil
}

// ParsePeerBundle accepts a SPIFFE bundle (JWKS JSON) or PEM root
// certificates for td.
func ParsePeerBundle(td spiffeid.TrustDomain, raw []byte) (*spiffebundle.Bundle, error) {
	if b, err := spiffebundle.Parse(td, raw); err == nil {
		return b, nil
	}
	xb, err := x509bundle.Parse(td, raw)
	if err != nil {
		return nil, errors.New("neither a SPIFFE bundle (JSON) nor PEM certificates")
	}
	return spiffebundle.FromX509Bundle(xb), nil
}

// FetchPeerBundle fetches td's bundle from its endpoint. It bounds the body
// to MaxBundleBytes, wants HTTP 200, and parses the SPIFFE bundle format
// for td. For https_spiffe the endpoint must present endpointID, verified
// against current (the peer bundle we already trust).
func FetchPeerBundle(ctx context.Context, rel ha.Federation, roots *x509.CertPool) (*spiffebundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(rel.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("api: federation %s: %w", rel.TrustDomain, err)
	}
	tr := &http.Transport{TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 10 * time.Second, DisableKeepAlives: true}
	switch rel.Profile {
	case ProfileSPIFFE:
		current, err := ParsePeerBundle(td, rel.Bundle)
		if err != nil {
			return nil, fmt.Errorf("api: federation %s: stored bundle: %w", td, err)
		}
		id, err := spiffeid.FromString(rel.EndpointSPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("api: federation %s: endpoint id: %w", td, err)
		}
		tr.TLSClientConfig = tlsconfig.TLSClientConfig(current, tlsconfig.AuthorizeID(id))
	case ProfileWeb:
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("api: federation %s: unknown profile %q", td, rel.Profile)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rel.Endpoint, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("api: federation %s: %w", td, redact.Err(err))
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil { // the error quotes the URL: never with its credentials
		return nil, fmt.Errorf("api: federation %s: fetch: %w", td, redact.Err(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("api: federation %s: endpoint answered %s", td, redact.Clip(resp.Status))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBundleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("api: federation %s: read: %w", td, redact.Err(err))
	}
	if len(body) > MaxBundleBytes {
		return nil, fmt.Errorf("api: federation %s: bundle larger than %d bytes", td, MaxBundleBytes)
	}
	b, err := spiffebundle.Parse(td, body)
	if err != nil {
		return nil, fmt.Errorf("api: federation %s: bad bundle: %w", td, err)
	}
	if b.X509Bundle().Empty() && len(b.JWTAuthorities()) == 0 {
		return nil, fmt.Errorf("api: federation %s: bundle has no keys", td)
	}
	return b, nil
}

// FederatorConfig configures a Federator.
type FederatorConfig struct {
	Store    FederationStore
	IsLeader func() bool
	Roots    *x509.CertPool // https_web roots; nil = system roots
	Logger   *slog.Logger
	// DefaultRefresh is used when a peer's bundle gives no refresh hint (5m).
	DefaultRefresh time.Duration
	// RetryAfter is how long to wait after a failed fetch (30s).
	RetryAfter time.Duration
	// Tick is how often due relationships are looked for (1s).
	Tick  time.Duration
	Clock func() time.Time
}

// Federator keeps peer bundles fresh: on the leader, it fetches each
// relationship's bundle when its refresh hint has passed and stores it in
// Raft state. A failed fetch keeps the old bundle and is retried later.
type Federator struct {
	cfg     FederatorConfig
	mu      sync.Mutex
	lastErr map[string]string
	nextTry map[string]time.Time
}

// NewFederator fills defaults.
func NewFederator(cfg FederatorConfig) (*Federator, error) {
	if cfg.Store == nil || cfg.IsLeader == nil {
		return nil, errors.New("api: federator: Store and IsLeader are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DefaultRefresh <= 0 {
		cfg.DefaultRefresh = 5 * time.Minute
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 30 * time.Second
	}
	if cfg.Tick <= 0 {
		cfg.Tick = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return &Federator{cfg: cfg, lastErr: map[string]string{}, nextTry: map[string]time.Time{}}, nil
}

// LastError is the last fetch failure for td on this node ("" if none).
func (f *Federator) LastError(td string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr[td]
}

// Run refreshes until ctx ends.
func (f *Federator) Run(ctx context.Context) {
	t := time.NewTicker(f.cfg.Tick)
	defer t.Stop()
	for {
		if f.cfg.IsLeader() {
			f.RefreshDue(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RefreshDue fetches every relationship whose bundle is due.
func (f *Federator) RefreshDue(ctx context.Context) {
	now := f.cfg.Clock()
	for _, rel := range f.cfg.Store.TrustState().Federations {
		if !f.due(rel, now) {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f.refresh(fctx, rel)
		cancel()
		f.mu.Lock()
		if err != nil {
			f.lastErr[rel.TrustDomain] = redact.Error(err)
			f.nextTry[rel.TrustDomain] = now.Add(f.cfg.RetryAfter)
		} else {
			delete(f.lastErr, rel.TrustDomain)
			delete(f.nextTry, rel.TrustDomain)
		}
		f.mu.Unlock()
		if err != nil {
			f.cfg.Logger.Warn("federated bundle refresh failed; keeping the old bundle", "trust_domain", rel.TrustDomain,
				"endpoint", redact.URL(rel.Endpoint), "err", redact.Error(err))
		}
	}
}

func (f *Federator) due(rel ha.Federation, now time.Time) bool {
	f.mu.Lock()
	next, failed := f.nextTry[rel.TrustDomain]
	f.mu.Unlock()
	if failed {
		return !now.Before(next)
	}
	// No refresh hint yet means the bundle is only the operator's initial
	// trust: fetch at once.
	if rel.UpdatedAt.IsZero() || len(rel.Bundle) == 0 || rel.RefreshHint <= 0 {
		return true
	}
	return !now.Before(rel.UpdatedAt.Add(rel.RefreshHint))
}

func (f *Federator) refresh(ctx context.Context, rel ha.Federation) error {
	b, err := FetchPeerBundle(ctx, rel, f.cfg.Roots)
	if err != nil {
		return err
	}
	raw, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("api: federation %s: marshal: %w", rel.TrustDomain, err)
	}
	hint, ok := b.RefreshHint()
	if !ok || hint <= 0 {
		hint = f.cfg.DefaultRefresh
	}
	hint = min(max(hint, 10*time.Second), 24*time.Hour)
	if err := f.cfg.Store.SetFederatedBundle(ctx, rel.TrustDomain, raw, hint); err != nil {
		return fmt.Errorf("api: federation %s: store: %w", rel.TrustDomain, err)
	}
	f.cfg.Logger.Info("federated bundle refreshed", "trust_domain", rel.TrustDomain, "x509_authorities", len(b.X509Authorities()), "refresh_hint", hint)
	return nil
}
