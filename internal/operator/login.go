package operator

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// LoginOptions say how a named operator or auditor enrols.
type LoginOptions struct {
	DataDir     string   // where server.json, bundle.pem and admin/ or auditor/ are written
	Servers     []string // API addresses (required)
	TrustDomain string   // default: the SPIFFE ID of the bundle's root
	BundleFile  string   // PEM roots of the CA; default DataDir/bundle.pem
	Token       string   // from `tier0 token create --admin NAME | --auditor NAME`
}

// Login exchanges an operator join token for a named admin or auditor
// SVID and writes a data dir the CLI can use (--data-dir DIR): server.json
// (servers, trust domain), bundle.pem, and DIR/admin or DIR/auditor. It
// returns the SVID.
func Login(ctx context.Context, o LoginOptions) (*x509svid.SVID, error) {
	if o.Token == "" || len(o.Servers) == 0 {
		return nil, errors.New("login: --token and --server are required")
	}
	if o.BundleFile == "" {
		o.BundleFile = filepath.Join(o.DataDir, "bundle.pem")
	}
	td, err := bundleTrustDomain(o.TrustDomain, o.BundleFile)
	if err != nil {
		return nil, err
	}
	bundle, err := client.LoadBundleFile(o.BundleFile, td)
	if err != nil {
		return nil, err
	}
	c, err := client.New(ctx, client.Config{Addrs: o.Servers, TrustDomain: td, Bundle: bundle})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		return nil, err
	}
	resp, err := c.Bootstrap().AttestJoinToken(ctx, &tier0v1.AttestJoinTokenRequest{Token: o.Token, Csr: csr})
	if err != nil {
		return nil, fmt.Errorf("login: %w", Err(err))
	}
	svid, err := client.ParseChain(resp.GetChain(), key, bundle)
	if err != nil {
		return nil, err
	}
	role, name, _ := roles.Parse(td, svid.ID)
	if (role != roles.Admin && role != roles.Auditor) || name == "" {
		return nil, fmt.Errorf("login: the token was for %s, not a named operator or auditor (tier0 token create --admin NAME | --auditor NAME)", svid.ID)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if err := client.WriteBundleFile(filepath.Join(o.DataDir, "bundle.pem"), bundle); err != nil {
		return nil, err
	}
	if err := client.WriteSVIDFiles(filepath.Join(o.DataDir, role.String()), svid, nil); err != nil {
		return nil, err
	}
	info, err := serverinfo.Read(o.DataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	info.Servers, info.TrustDomain = o.Servers, td.Name()
	if err := serverinfo.Write(o.DataDir, info); err != nil {
		return nil, err
	}
	return svid, nil
}

// bundleTrustDomain is name, else the trust domain of the first root in
// the bundle file that has a SPIFFE ID.
func bundleTrustDomain(name, path string) (spiffeid.TrustDomain, error) {
	if name != "" {
		return spiffeid.TrustDomainFromString(name)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return spiffeid.TrustDomain{}, fmt.Errorf("login: bundle: %w", err)
	}
	for {
		var b *pem.Block
		b, raw = pem.Decode(raw)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		if id, err := x509svid.IDFromCert(c); err == nil {
			return id.TrustDomain(), nil
		}
	}
	return spiffeid.TrustDomain{}, fmt.Errorf("login: bundle %s names no trust domain: pass --trust-domain-of-server", path)
}

// renewIfDue renews a named operator's credential in dir at half its
// lifetime (RenewOperator) and returns the one to use. A failed renewal of
// a credential that is still valid is not an error: the call goes on with
// it and the next command tries again.
func renewIfDue(ctx context.Context, td spiffeid.TrustDomain, servers []string, bundle *x509bundle.Bundle, dir string, svid *x509svid.SVID, now time.Time) *x509svid.SVID {
	role, name, _ := roles.Parse(td, svid.ID)
	if (role != roles.Admin && role != roles.Auditor) || name == "" {
		return svid
	}
	leaf := svid.Certificates[0]
	if now.Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore)/2)) || !now.Before(leaf.NotAfter) {
		return svid
	}
	c, err := client.New(ctx, client.Config{Addrs: servers, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		return svid
	}
	defer c.Close()
	csr, key, err := client.NewCSR(spiffeid.ID{})
	if err != nil {
		return svid
	}
	resp, err := tier0v1.NewOperatorClient(c).RenewOperator(ctx, &tier0v1.RenewAgentRequest{Csr: csr})
	if err != nil {
		fmt.Fprintf(os.Stderr, "tier0: could not renew the credential in %s (expires %s): %v\n", dir, leaf.NotAfter.UTC().Format(time.RFC3339), Err(err))
		return svid
	}
	renewed, err := client.ParseChain(resp.GetChain(), key, bundle)
	if err != nil || client.WriteSVIDFiles(dir, renewed, nil) != nil {
		return svid
	}
	return renewed
}
