package drill

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// Drill probes: an agent made for the drill asks for one SVID, which is
// verified with go-spiffe (x509svid.Verify) plus what it does not check.

const drillAgent = "tier0-drill"

func probeID(td spiffeid.TrustDomain) spiffeid.ID {
	return spiffeid.RequireFromPath(td, "/tier0-drill/probe")
}

// enrollProbe creates a join token and an entry for the drill agent with
// the admin client and bootstraps the agent. It returns the agent SVID and
// the entry's ID.
func enrollProbe(ctx context.Context, admin *client.Client, addrs []string, td spiffeid.TrustDomain, bundle x509bundle.Source) (*x509svid.SVID, string, error) {
	tok, err := admin.Admin().CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Agent: drillAgent, TtlSeconds: 600})
	if err != nil {
		return nil, "", fmt.Errorf("drill: join token: %w", operator.Err(err))
	}
	var entryID string
	e, err := admin.Admin().CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: drillAgent, SpiffeId: probeID(td).String(), TtlSeconds: 900})
	switch {
	case err == nil:
		entryID = e.GetEntry().GetId()
	case status.Code(err) == codes.AlreadyExists: // an earlier drill left it
	default:
		return nil, "", fmt.Errorf("drill: probe entry: %w", operator.Err(err))
	}
	svid, err := client.Bootstrap(ctx, addrs, td, bundle, tok.GetToken())
	if err != nil {
		return nil, "", fmt.Errorf("drill: bootstrap the probe agent: %w", err)
	}
	return svid, entryID, nil
}

// mintProbe mints one probe SVID and verifies it against bundle. It
// returns the leaf's serial (lowercase hex, as in records).
func mintProbe(ctx context.Context, c *client.Client, td spiffeid.TrustDomain, bundle x509bundle.Source) (string, error) {
	id := probeID(td)
	csr, key, err := client.NewCSR(id)
	if err != nil {
		return "", err
	}
	idem := make([]byte, 16) // the client's retries of this call resend it: one SVID per probe
	if _, err := rand.Read(idem); err != nil {
		return "", err
	}
	resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr, IdempotencyKey: idem}}})
	if err != nil {
		return "", operator.Err(err)
	}
	if len(resp.GetResults()) != 1 {
		return "", errors.New("drill: probe: no result")
	}
	res := resp.GetResults()[0]
	if e := res.GetError(); e != nil {
		return "", fmt.Errorf("drill: probe: code %d: %s", e.GetCode(), e.GetMessage())
	}
	var der []byte
	for _, c := range res.GetChain() {
		der = append(der, c...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	svid, err := x509svid.ParseRaw(der, keyDER)
	if err != nil {
		return "", fmt.Errorf("drill: probe: parse: %w", err)
	}
	got, _, err := x509svid.Verify(svid.Certificates, bundle)
	if err != nil {
		return "", fmt.Errorf("drill: probe: x509svid.Verify: %w", err)
	}
	leaf := svid.Certificates[0]
	if got != id || leaf.KeyUsage != x509.KeyUsageDigitalSignature || leaf.IsCA {
		return "", fmt.Errorf("drill: probe: bad SVID profile (id %s, key usage %v)", got, leaf.KeyUsage)
	}
	return leaf.SerialNumber.Text(16), nil
}

// scratchNode is a `tier0 server` child process on loopback.
type scratchNode struct {
	dir  string
	td   spiffeid.TrustDomain
	cmd  *exec.Cmd
	done chan struct{}
	info serverinfo.Info
	log  *os.File
}

func startScratchNode(ctx context.Context, bin string, env []string, dir, td string) (*scratchNode, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("drill: %w", err)
		}
		bin = exe
	}
	logf, err := os.Create(filepath.Join(dir, "..", "server.log"))
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	s := &scratchNode{dir: dir, td: spiffeid.RequireTrustDomainFromString(td), done: make(chan struct{}), log: logf}
	s.cmd = exec.Command(bin, "server", "--data-dir", dir, "--node-id", "drill", "--trust-domain", td,
		"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", "sqlite:"+filepath.Join(dir, "records.db"))
	s.cmd.Env = env // RestoreConfig.Env: no TIER0_<FLAG> variable of the real server
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("drill: start scratch node: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return nil, fmt.Errorf("drill: the scratch node exited: see %s", logf.Name())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		default:
		}
		info, err := serverinfo.Read(dir)
		if err == nil && info.PID == s.cmd.Process.Pid {
			s.info = info
			if resp, err := http.Get("http://" + s.info.HTTP + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return s, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	s.stop()
	return nil, fmt.Errorf("drill: the scratch node was not ready within 2m: see %s", logf.Name())
}

func (s *scratchNode) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
}

func (s *scratchNode) bundlePEM() []byte {
	raw, _ := os.ReadFile(filepath.Join(s.dir, "bundle.pem"))
	return raw
}

func (s *scratchNode) admin(ctx context.Context) (*client.Client, error) {
	return operator.Dial(ctx, operator.Options{DataDir: s.dir}, "admin")
}

type probeResult struct {
	id      spiffeid.ID
	serial  string
	entryID string
}

// probe enrolls the drill agent on the scratch node and mints one SVID,
// verified against the source's bundle.
func (s *scratchNode) probe(ctx context.Context, src ha.Bundle) (probeResult, error) {
	var roots []*x509.Certificate
	for _, der := range src.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return probeResult{}, err
		}
		roots = append(roots, c)
	}
	bundle := x509bundle.FromX509Authorities(s.td, roots)
	admin, err := s.admin(ctx)
	if err != nil {
		return probeResult{}, err
	}
	defer admin.Close()
	svid, entryID, err := enrollProbe(ctx, admin, s.info.Servers, s.td, bundle)
	if err != nil {
		return probeResult{}, err
	}
	c, err := client.New(ctx, client.Config{Addrs: s.info.Servers, TrustDomain: s.td, Bundle: bundle, SVID: client.NewRotatingSVID(svid)})
	if err != nil {
		return probeResult{}, err
	}
	defer c.Close()
	serial, err := mintProbe(ctx, c, s.td, bundle)
	return probeResult{id: probeID(s.td), serial: serial, entryID: entryID}, err
}

func (s *scratchNode) entryIDs(ctx context.Context) ([]string, error) {
	admin, err := s.admin(ctx)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	resp, err := admin.Admin().ListEntries(ctx, &tier0v1.ListEntriesRequest{})
	if err != nil {
		return nil, operator.Err(err)
	}
	var ids []string
	for _, e := range resp.GetEntries() {
		ids = append(ids, e.GetId())
	}
	slices.Sort(ids)
	return ids, nil
}
