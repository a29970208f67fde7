package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

func newFetchCmd(e *env) *cobra.Command {
	var out string
	var ttl time.Duration
	var batch int
	var token, bundlePath, tdName string
	cmd := &cobra.Command{
		Use:   "fetch --out DIR [--ttl 15m..60m] [--token T --bundle FILE]",
		Short: "fetch an SVID for every entry granted to this agent into DIR/<id path>/",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			if ttl < 0 || ttl%time.Second != 0 {
				return fmt.Errorf("--ttl %s: want whole seconds (0 = each entry's TTL)", ttl)
			}
			if token != "" || e.getenv(tokenEnv) != "" {
				// First run: bootstrap with the join token unless already done.
				if _, err := os.Stat(filepath.Join(agentDir(e.dataDir), client.SVIDFile)); errors.Is(err, fs.ErrNotExist) {
					if err := e.bootstrap(cmd.Context(), token, bundlePath, tdName); err != nil {
						return err
					}
				}
			}
			return e.fetch(cmd.Context(), out, ttl, batch)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output directory")
	f.DurationVar(&ttl, "ttl", 0, "SVID lifetime, within [15m, 60m] (default: each entry's TTL)")
	f.IntVar(&batch, "batch", 0, "items per MintX509SVIDs call (0 = all in one call)")
	f.StringVar(&token, "token", "", "join token: bootstrap first if this agent has no SVID yet (or env "+tokenEnv+")")
	f.StringVar(&bundlePath, "bundle", "", "with --token: PEM file with the tier0 root certificates")
	f.StringVar(&tdName, "trust-domain", "", "with --token: trust domain (default: from the bundle's root)")
	return cmd
}

// pending is one SVID to mint.
type pending struct {
	raw string // the entry's spiffe_id as received
	id  spiffeid.ID
	dir string
	key crypto.Signer
	err error // set when the item could not even be requested
}

func (e *env) fetch(ctx context.Context, out string, ttl time.Duration, batch int) error {
	a, err := e.loadAgent()
	if err != nil {
		return err
	}
	if err := a.checkExpiry(e.now()); err != nil {
		return err
	}
	if !e.now().Before(a.halfLife()) {
		svid, err := e.renew(ctx, a)
		if err != nil {
			return err
		}
		e.logger().InfoContext(ctx, "renewed agent SVID", "id", svid.ID, "expires", svid.Certificates[0].NotAfter)
	}
	c, err := e.dial(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	list, err := c.Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{})
	if err != nil {
		return fmt.Errorf("list authorized entries: %w", err)
	}
	if len(list.GetEntries()) == 0 {
		fmt.Fprintf(e.stdout, "no entries are granted to %s\n", a.current().ID)
		return nil
	}
	items, reqs := e.prepare(list.GetEntries(), out, ttl)
	results := make([]*tier0v1.MintResult, 0, len(reqs))
	if batch <= 0 {
		batch = len(reqs)
	}
	for start := 0; start < len(reqs); start += batch {
		chunk := reqs[start:min(start+batch, len(reqs))]
		resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: chunk})
		if err != nil {
			return fmt.Errorf("mint x509 svids: %w", err)
		}
		if len(resp.GetResults()) != len(chunk) {
			return fmt.Errorf("mint x509 svids: server returned %d results for %d items", len(resp.GetResults()), len(chunk))
		}
		results = append(results, resp.GetResults()...)
	}
	failed := 0
	next := 0
	for _, p := range items {
		if p.err == nil {
			p.err = e.store(a, p, results[next])
			next++
		}
		if p.err != nil {
			failed++
			fmt.Fprintf(e.stderr, "FAILED\t%s\t%s\n", p.raw, describe(p.err))
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d SVIDs failed", failed, len(items))
	}
	return nil
}

// prepare makes one key and CSR per distinct SPIFFE ID; items that cannot
// be requested carry their error and get no MintItem.
func (e *env) prepare(entries []*tier0v1.Entry, out string, ttl time.Duration) ([]*pending, []*tier0v1.MintItem) {
	var items []*pending
	var reqs []*tier0v1.MintItem
	seen := map[string]bool{}   // spiffe ids
	dirs := map[string]string{} // dir -> spiffe id
	for _, entry := range entries {
		if seen[entry.GetSpiffeId()] {
			continue
		}
		seen[entry.GetSpiffeId()] = true
		p := &pending{raw: entry.GetSpiffeId()}
		items = append(items, p)
		p.id, p.err = spiffeid.FromString(entry.GetSpiffeId())
		if p.err != nil {
			p.err = fmt.Errorf("entry %s: spiffe id %q: %w", entry.GetId(), entry.GetSpiffeId(), p.err)
			continue
		}
		name := dirName(p.id)
		p.dir = filepath.Join(out, name)
		if other, dup := dirs[name]; dup {
			p.err = fmt.Errorf("directory %s is already used by %s", p.dir, other)
			continue
		}
		dirs[name] = p.id.String()
		var csr []byte
		csr, p.key, p.err = client.NewCSR(p.id)
		if p.err != nil {
			continue
		}
		item := &tier0v1.MintItem{Csr: csr, TtlSeconds: int64(ttl / time.Second)}
		if na, err := client.LeafNotAfter(filepath.Join(p.dir, client.SVIDFile)); err == nil {
			item.RenewingNotAfter = na
		}
		reqs = append(reqs, item)
	}
	return items, reqs
}

// store verifies one result and writes it to p.dir.
func (e *env) store(a *agent, p *pending, res *tier0v1.MintResult) error {
	if st := res.GetError(); st != nil {
		return fmt.Errorf("%s: %s", codeText(codes.Code(st.GetCode()).String()), st.GetMessage())
	}
	svid, err := client.ParseChain(res.GetChain(), p.key, a.bundle)
	if err != nil {
		return err
	}
	if svid.ID != p.id {
		return fmt.Errorf("server issued %s, want %s", svid.ID, p.id)
	}
	if err := client.WriteSVIDFiles(p.dir, svid, a.bundle); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\texpires %s\t%s\n", svid.ID, svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339), p.dir)
	return nil
}

// dirName maps spiffe://td/a/b/c to "a_b_c" (the trust domain is dropped).
func dirName(id spiffeid.ID) string {
	name := strings.ReplaceAll(strings.Trim(id.Path(), "/"), "/", "_")
	if name == "" {
		name = "_"
	}
	return name
}
