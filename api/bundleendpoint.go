package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultRefreshHint is the refresh hint of the served bundle.
const DefaultRefreshHint = 5 * time.Minute

// SPIFFEBundle builds the trust bundle of td in the SPIFFE bundle format:
// the X.509 roots, the JWT keys, a refresh hint and a sequence number that
// grows at every change of either.
func SPIFFEBundle(td spiffeid.TrustDomain, state State, trust TrustReader, refreshHint time.Duration) (*spiffebundle.Bundle, error) {
	b := state.Bundle()
	out := spiffebundle.New(td)
	for i, der := range b.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("api: bundle root %d: %w", i, err)
		}
		out.AddX509Authority(c)
	}
	seq := b.Sequence
	if trust != nil {
		t := trust.TrustState()
		seq += t.Sequence
		for _, k := range t.JWTKeys {
			pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("api: jwt key %s: %w", k.ID, err)
			}
			if err := out.AddJWTAuthority(k.ID, pub); err != nil {
				return nil, fmt.Errorf("api: jwt key %s: %w", k.ID, err)
			}
		}
	}
	out.SetRefreshHint(refreshHint)
	out.SetSequenceNumber(seq)
	return out, nil
}

// BundleEndpoint serves the SPIFFE bundle endpoint (GET only). With svid
// set it is the https_spiffe profile (the server presents svid); the
// caller wraps it for https_web with a WebPKI certificate.
func BundleEndpoint(td spiffeid.TrustDomain, state State, trust TrustReader, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := SPIFFEBundle(td, state, trust, DefaultRefreshHint)
		if err == nil {
			var raw []byte
			if raw, err = b.Marshal(); err == nil {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(raw)
				return
			}
		}
		log.Error("bundle endpoint", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	})
}

// HTTPServer returns an http.Server for h with the bounds every tier0 HTTP
// listener uses (the bundle endpoint, the health and metrics port): the TLS
// handshake and the request header within 5s, the whole request within
// 10s, the response within 30s, an idle keep-alive connection closed after
// 60s, and request headers of at most 16 KiB. Without IdleTimeout a
// keep-alive connection would wait for its next request forever.
func HTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second, // also bounds the TLS handshake
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// BundleEndpointTLS is the https_spiffe TLS configuration: the server
// authenticates with its SVID.
func BundleEndpointTLS(svid x509svid.Source) *tls.Config {
	return tlsconfig.TLSServerConfig(svid)
}
