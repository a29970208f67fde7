package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
)

// dialOperator connects with the credential in DATA/<role> (or --credential).
func dialOperator(ctx context.Context, g *globalFlags, role string) (*client.Client, error) {
	var info serverInfo
	raw, err := os.ReadFile(filepath.Join(g.dataDir, "server.json"))
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &info); err != nil {
			return nil, fmt.Errorf("%s/server.json: %w", g.dataDir, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		if len(g.servers) == 0 || g.td == "" {
			return nil, fmt.Errorf("no %s/server.json: start `tier0 server` with this --data-dir, or pass --server and --trust-domain-of-server", g.dataDir)
		}
	default:
		return nil, err
	}
	if len(g.servers) > 0 {
		info.Servers = g.servers
	}
	if g.td != "" {
		info.TrustDomain = g.td
	}
	td, err := spiffeid.TrustDomainFromString(info.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trust domain: %w", err)
	}
	bundle, err := client.LoadBundleFile(filepath.Join(g.dataDir, "bundle.pem"), td)
	if err != nil {
		return nil, err
	}
	dir := g.credDir
	if dir == "" {
		dir = filepath.Join(g.dataDir, role)
	}
	svid, err := loadCredential(dir)
	if err != nil {
		return nil, err
	}
	return client.New(ctx, client.Config{Addrs: info.Servers, TrustDomain: td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
}

// withOperator runs fn with a client authenticated by DATA/<role>.
func withOperator(cmd *cobra.Command, g *globalFlags, role string, fn func(c *client.Client) error) error {
	c, err := dialOperator(cmd.Context(), g, role)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// loadCredential reads DIR/svid.pem and DIR/key.pem. The server renews
// them at half life with two atomic renames, so a reader can catch the new
// key with the old chain: it then reads again, a few times.
func loadCredential(dir string) (*x509svid.SVID, error) {
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

// cliErr turns a gRPC status into a one-line message.
func cliErr(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}
