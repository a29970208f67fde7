// Package operator is the client side of tier0's operator commands: it
// connects to a node with the credentials `tier0 server` writes into its
// data dir (DATA/admin, DATA/auditor), renders gRPC errors in one line,
// and takes backups (backup.go). Used by cmd/tier0 and internal/drill.
package operator

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// Options say where the node is and which credential to use; empty fields
// come from DATA/server.json.
type Options struct {
	DataDir     string   // the server's data dir (server.json, bundle.pem, credentials)
	Servers     []string // API addresses; default: server.json's
	TrustDomain string   // default: server.json's
	CredDir     string   // svid.pem and key.pem; default DATA/<role>
	// Now is the clock that decides whether a named operator's credential
	// is due for renewal (login.go); default time.Now.
	Now func() time.Time
}

// Dial connects with the credential of role ("admin" or "auditor").
func Dial(ctx context.Context, o Options, role string) (*client.Client, error) {
	info, err := serverinfo.Read(o.DataDir)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if len(o.Servers) == 0 || o.TrustDomain == "" {
			return nil, fmt.Errorf("no %s/server.json: start `tier0 server` with this --data-dir, or pass --server and --trust-domain-of-server", o.DataDir)
		}
	default:
		return nil, err
	}
	if len(o.Servers) > 0 {
		info.Servers = o.Servers
	}
	if o.TrustDomain != "" {
		info.TrustDomain = o.TrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(info.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain: %w", err)
	}
	bundle, err := client.LoadBundleFile(filepath.Join(o.DataDir, "bundle.pem"), td)
	if err != nil {
		return nil, err
	}
	dir := o.CredDir
	if dir == "" {
		dir = filepath.Join(o.DataDir, role)
	}
	svid, err := LoadCredential(dir)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	svid = renewIfDue(ctx, td, info.Servers, bundle, dir, svid, now()) // a named operator's (login.go)
	return client.New(ctx, client.Config{Addrs: info.Servers, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
}

// TrustDomainName is o.TrustDomain, else server.json's ("" when unknown).
func (o Options) TrustDomainName() string {
	if o.TrustDomain != "" {
		return o.TrustDomain
	}
	info, _ := serverinfo.Read(o.DataDir)
	return info.TrustDomain
}

// LoadCredential reads DIR/svid.pem and DIR/key.pem. The server renews
// them at half life with two atomic renames, so a reader can catch the new
// key with the old chain: it then reads again, a few times.
func LoadCredential(dir string) (*x509svid.SVID, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var svid *x509svid.SVID
		svid, err = client.LoadSVIDFiles(filepath.Join(dir, "svid.pem"), filepath.Join(dir, "key.pem"))
		if err == nil {
			return svid, nil
		}
		time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
	}
	return nil, fmt.Errorf("operator credential in %s: %w", dir, err)
}

// Err turns a gRPC status into a one-line message ("Code: message");
// other errors pass unchanged.
func Err(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}
