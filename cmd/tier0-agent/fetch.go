package main

import (
	"context"
	"crypto"
	"crypto/rand"
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
	"github.com/tier0-ca/tier0/internal/atomicfile"
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
	f.DurationVar(&ttl, "ttl", 0, "SVID lifetime, within [15m, 60m] (default: each entry's TTL; never more than the entry's TTL: clamped)")
	f.IntVar(&batch, "batch", 0, "items per MintX509SVIDs call (0 = all in one call)")
	f.StringVar(&token, "token", "", "join token: bootstrap first if this agent has no SVID yet (or env "+tokenEnv+")")
	f.StringVar(&bundlePath, "bundle", "", "with --token: PEM file with the tier0 root certificates")
	f.StringVar(&tdName, "trust-domain", "", "with --token: trust domain (default: from the bundle's root)")
	return cmd
}

// pending is one SVID to mint.
type pending struct {
	raw  string // the entry's spiffe_id as received
	id   spiffeid.ID
	name string // its directory under OUT
	dir  string // OUT/name, for messages
	key  crypto.Signer
	err  error // set when the item could not even be requested
}

// fetch writes every granted SVID into OUT/<name>/. OUT is opened once
// (created 0700 if missing) and must not be a symbolic link; everything
// below it is opened relative to it without following links, so a link
// planted in OUT (as a directory or as key.pem) is refused for that entry
// and never written through.
func (e *env) fetch(ctx context.Context, out string, ttl time.Duration, batch int) error {
	a, err := e.loadAgent()
	if err != nil {
		return err
	}
	if err := a.checkExpiry(e.now()); err != nil {
		return err
	}
	c, err := e.dial(ctx, a)
	if err != nil {
		return err
	}
	defer c.Close()
	// The bundle first: after a root switch the nodes present SVIDs under
	// the new root, and the SVIDs minted below chain to it.
	if _, err := e.syncBundle(ctx, c, a); err != nil {
		e.logger().WarnContext(ctx, "bundle refresh failed; going on with the bundle on disk", "err", describe(err))
	}
	if !e.now().Before(a.halfLife()) || a.taintedChain(a.current().Certificates) {
		svid, err := e.renew(ctx, a)
		if err != nil {
			return err
		}
		e.logger().InfoContext(ctx, "renewed agent SVID", "id", svid.ID, "expires", svid.Certificates[0].NotAfter)
	}
	list, err := c.Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{})
	if err != nil {
		return fmt.Errorf("list authorized entries: %w", err)
	}
	if len(list.GetEntries()) == 0 {
		fmt.Fprintf(e.stdout, "no entries are granted to %s\n", a.current().ID)
		return nil
	}
	root, err := atomicfile.OpenDir(out, 0o700)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer root.Close()
	items, reqs := e.prepare(list.GetEntries(), root, ttl)
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
			p.err = e.store(a, root, p, results[next])
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
func (e *env) prepare(entries []*tier0v1.Entry, root *atomicfile.Dir, ttl time.Duration) ([]*pending, []*tier0v1.MintItem) {
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
		p.name = dirName(p.id)
		p.dir = filepath.Join(root.Path(), p.name)
		if other, dup := dirs[p.name]; dup {
			p.err = fmt.Errorf("directory %s is already used by %s", p.dir, other)
			continue
		}
		dirs[p.name] = p.id.String()
		var na int64
		if na, p.err = renewingNotAfter(root, p.name); p.err != nil {
			continue
		}
		var csr []byte
		csr, p.key, p.err = client.NewCSR(p.id)
		if p.err != nil {
			continue
		}
		idem := make([]byte, 16) // the client's retries of this call resend it (idem.go)
		if _, p.err = rand.Read(idem); p.err != nil {
			continue
		}
		reqs = append(reqs, &tier0v1.MintItem{Csr: csr, TtlSeconds: int64(ttl / time.Second), RenewingNotAfter: na, IdempotencyKey: idem})
	}
	return items, reqs
}

// renewingNotAfter is the expiry of the SVID already in root/name (0 when
// there is none or it does not parse): the server serves renewals of the
// soonest-expiring first. A symbolic link at root/name or its svid.pem is
// an error: the entry is not requested.
func renewingNotAfter(root *atomicfile.Dir, name string) (int64, error) {
	d, err := root.Sub(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	data, err := d.ReadFile(client.SVIDFile, 1<<20)
	switch {
	case errors.Is(err, atomicfile.ErrSymlink), errors.Is(err, atomicfile.ErrNotRegular):
		return 0, err
	case err != nil:
		return 0, nil // missing or unreadable: no hint
	}
	na, err := client.PEMLeafNotAfter(data)
	if err != nil {
		return 0, nil
	}
	return na, nil
}

// store verifies one result and writes it to OUT/p.name.
func (e *env) store(a *agent, root *atomicfile.Dir, p *pending, res *tier0v1.MintResult) error {
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
	d, err := root.MkSub(p.name, 0o700)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := client.WriteSVIDTo(d, svid, a.bundle); err != nil {
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
