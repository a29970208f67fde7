package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/redact"
)

// JWTIssuer mints JWT-SVIDs (implemented by *ca.CA).
type JWTIssuer interface {
	MintJWT(ctx context.Context, caller spiffeid.ID, req ca.JWTRequest) (ca.JWTResult, error)
}

// TrustReader reads the JWT keys and federated bundles (implemented by
// *ha.Node).
type TrustReader interface {
	TrustState() ha.TrustState
}

// MintJWTSVID mints a JWT-SVID for an ID an entry grants the calling agent.
func (a *agentService) MintJWTSVID(ctx context.Context, req *tier0v1.MintJWTSVIDRequest) (*tier0v1.MintJWTSVIDResponse, error) {
	const method = "MintJWTSVID"
	s := a.s
	defer s.observe(method, time.Now())
	if s.cfg.JWT == nil {
		return nil, s.toStatus(ctx, method, fmt.Errorf("api: jwt-svids are not configured: %w", ha.ErrUnavailable))
	}
	id, err := ca.ParseID(req.GetSpiffeId())
	if err != nil {
		return nil, s.toStatus(ctx, method, err)
	}
	ttl := req.GetTtlSeconds()
	if ttl < 0 || ttl > int64(24*time.Hour/time.Second) {
		ttl = int64(24 * time.Hour / time.Second) // ca names the bounds
	}
	c := callerFrom(ctx)
	res, err := s.cfg.JWT.MintJWT(ctx, c.id, ca.JWTRequest{ID: id, Audience: req.GetAudience(), TTL: time.Duration(ttl) * time.Second})
	if errors.Is(err, ca.ErrInvalidAudience) {
		err = fmt.Errorf("%w: %v", errBadInput, err)
	}
	s.recordItem(c, id, res.EntryID, err) // decisions.go
	markRecorded(ctx)
	if err != nil {
		s.log.InfoContext(ctx, "jwt-svid refused", "caller", c.id.String(), "spiffe_id", redact.Clip(req.GetSpiffeId()), "err", err)
		return nil, s.toStatus(ctx, method, err)
	}
	s.log.InfoContext(ctx, "jwt-svid issued", "caller", c.id.String(), "spiffe_id", id.String(), "jti", res.Record.Serial)
	s.metrics.issued.WithLabelValues("jwt").Inc()
	return &tier0v1.MintJWTSVIDResponse{Token: res.Token, ExpiresAt: res.Expiry.Unix()}, nil
}

// addTrust adds the JWT authorities and federated bundles to a bundle
// response.
func (s *Server) addTrust(resp *tier0v1.GetBundleResponse) {
	if s.cfg.Trust == nil {
		return
	}
	t := s.cfg.Trust.TrustState()
	resp.TrustSequence = t.Sequence
	for _, k := range t.JWTKeys {
		resp.JwtAuthorities = append(resp.JwtAuthorities, &tier0v1.JWTAuthority{KeyId: k.ID, PublicKey: k.PublicKey, ExpiresAt: k.NotAfter.Unix()})
	}
	for _, f := range t.Federations {
		if len(f.Bundle) > 0 {
			resp.Federated = append(resp.Federated, &tier0v1.FederatedBundle{TrustDomain: f.TrustDomain, SpiffeBundle: f.Bundle})
		}
	}
}
