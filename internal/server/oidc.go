package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/api/oidc"
)

// OIDCDiscovery configures the OIDC discovery provider (api/oidc): the
// discovery document and the JWT-SVID keys on HTTPS, so that cloud IAM
// and Vault can verify JWT-SVIDs. Issuer alone (no Addr) only sets the iss
// claim, for a provider run elsewhere.
type OIDCDiscovery struct {
	Addr              string // HTTPS listen address; "": off
	Issuer            string // public https URL; JWT-SVIDs carry it as iss
	CertFile, KeyFile string // Web PKI certificate chain and key (PEM)
}

func (o OIDCDiscovery) validate() error {
	if o.Issuer != "" {
		if _, err := oidc.ParseIssuer(o.Issuer); err != nil {
			return fmt.Errorf("--oidc-issuer: %w", err)
		}
	}
	if o.Addr != "" && (o.Issuer == "" || o.CertFile == "" || o.KeyFile == "") {
		return errors.New("--oidc-discovery needs --oidc-issuer, --oidc-cert and --oidc-key")
	}
	if o.Addr == "" && (o.CertFile != "" || o.KeyFile != "") {
		return errors.New("--oidc-cert and --oidc-key need --oidc-discovery")
	}
	return nil
}

// listenOIDC loads the certificate and binds the address (with the other
// listeners, before the data dir is touched).
func (r *run) listenOIDC() error {
	o := r.s.cfg.OIDC
	if o.Addr == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return fmt.Errorf("--oidc-cert/--oidc-key: %w", err)
	}
	r.oidcCert = &cert
	if r.olis, err = net.Listen("tcp", o.Addr); err != nil {
		return fmt.Errorf("listen oidc discovery: %w", err)
	}
	return nil
}

// serveOIDC serves the provider on the bound listener.
func (r *run) serveOIDC() error {
	if r.olis == nil {
		return nil
	}
	h, err := oidc.New(oidc.Config{Issuer: r.s.cfg.OIDC.Issuer, Keys: r.node, Logger: r.s.log})
	if err != nil {
		return err
	}
	r.s.log.Info("oidc discovery", "addr", r.olis.Addr().String(), "issuer", r.s.cfg.OIDC.Issuer)
	r.serveHTTP("oidc discovery", &r.olis, api.HTTPServer(h), &tls.Config{Certificates: []tls.Certificate{*r.oidcCert}, MinVersion: tls.VersionTLS12})
	return nil
}
