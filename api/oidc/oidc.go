// Package oidc serves an OpenID Connect discovery document and the JWKS of
// the current JWT-SVID keys, so that relying parties that speak OIDC (AWS
// STS AssumeRoleWithWebIdentity, GCP workload identity federation,
// Vault/OpenBao JWT auth) can verify tier0's JWT-SVIDs. It is SPIRE's
// oidc-discovery-provider inside the server: the keys are read from the
// replicated trust state on every request, so a key appears in the JWKS as
// soon as it is published (before it signs anything) and stays until it
// expires (after the last token it signed), which is the rotation overlap
// a verifier needs.
package oidc

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/tier0-ca/tier0/ha"
)

// Paths under the issuer URL's path.
const (
	WellKnownPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys" // as SPIRE's provider
)

// KeySource reads the published JWT keys (implemented by *ha.Node).
type KeySource interface {
	TrustState() ha.TrustState
}

// Config configures a Handler.
type Config struct {
	// Issuer is the public https URL of the provider, exactly as relying
	// parties are configured with it and as JWT-SVIDs carry it in "iss".
	// Its path (if any) prefixes the served paths.
	Issuer string
	Keys   KeySource
	Clock  func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

// Handler serves WellKnownPath and KeysPath under the issuer's path.
type Handler struct {
	cfg       Config
	log       *slog.Logger
	discovery []byte // the document never changes
	wellKnown string
	keys      string
}

// discoveryDoc is the OpenID Provider Metadata tier0 can honour: it issues
// no tokens through OAuth flows, so only what a verifier needs.
type discoveryDoc struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"` // required by the spec; none (as SPIRE)
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

// New validates cfg and returns the handler.
func New(cfg Config) (*Handler, error) {
	iss, err := ParseIssuer(cfg.Issuer)
	if err != nil {
		return nil, err
	}
	if cfg.Keys == nil {
		return nil, errors.New("oidc: config: a key source is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	prefix := strings.TrimSuffix(iss.Path, "/")
	doc, err := json.MarshalIndent(discoveryDoc{
		Issuer:                           cfg.Issuer,
		JWKSURI:                          strings.TrimSuffix(cfg.Issuer, "/") + KeysPath,
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{string(jose.ES256)}, // the only algorithm tier0 signs with
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("oidc: discovery document: %w", err)
	}
	return &Handler{cfg: cfg, log: log, discovery: doc, wellKnown: prefix + WellKnownPath, keys: prefix + KeysPath}, nil
}

// ParseIssuer checks an issuer URL: absolute https, a host, no query,
// fragment or user info (OpenID Connect Discovery 1.0, section 3).
func ParseIssuer(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("oidc: issuer: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return nil, fmt.Errorf("oidc: issuer %q: want an https URL with a host and no user info, query or fragment", s)
	}
	return u, nil
}

// ServeHTTP serves the discovery document and the key set (GET and HEAD).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.wellKnown && r.URL.Path != h.keys {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body := h.discovery
	if r.URL.Path == h.keys {
		var err error
		if body, err = h.keySet(); err != nil {
			h.log.Error("oidc: key set", "err", err)
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		// Keys rotate: let a verifier cache briefly, never for long.
		w.Header().Set("Cache-Control", "max-age=60")
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// keySet is the JWKS of every published key not yet expired.
func (h *Handler) keySet() ([]byte, error) {
	now := h.cfg.Clock()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	for _, k := range h.cfg.Keys.TrustState().JWTKeys {
		if !now.Before(k.NotAfter) {
			continue
		}
		pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("jwt key %s: %w", k.ID, err)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	return json.MarshalIndent(set, "", "  ")
}
