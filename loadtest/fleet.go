package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/sync/errgroup"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// Fleet is a set of bootstrapped agents, each with its workloads' keys and
// CSRs generated before any clock starts.
type Fleet struct {
	TrustDomain spiffeid.TrustDomain
	Bundle      *x509bundle.Bundle
	Agents      []*Agent
	// Prefix is the path prefix of every workload ID of this fleet
	// (spiffe://TD/loadtest/RUN/), so its records can be told apart.
	Prefix string

	cfg FleetConfig // how to reach the server as admin, for DeleteEntries
}

// Agent is one simulated identity agent: its own mTLS connection, made
// with an agent SVID obtained through a join token.
type Agent struct {
	Name     string
	ID       spiffeid.ID
	Client   *client.Client
	EntryIDs []string // the registration entries made for it
	// Workloads holds each workload's CSR made in advance, only when the
	// fleet was built with PrecomputeCSRs (compare: no CSR work inside the
	// measured loop). Otherwise CSRs are made when a call is sent (CSR).
	Workloads []*Workload

	n      int               // workloads
	prefix string            // workload IDs are prefix + index
	key    *ecdsa.PrivateKey // the workloads' key when CSRs are made lazily
	spki   []byte            // key's SubjectPublicKeyInfo
}

// Workload is one SVID an agent keeps fresh: its CSR (when made in
// advance) and the DER SubjectPublicKeyInfo of its key, against which
// returned certificates are checked. The private key is not kept.
type Workload struct {
	ID   spiffeid.ID
	CSR  []byte
	SPKI []byte
}

// NumWorkloads is the number of the agent's workloads.
func (a *Agent) NumWorkloads() int { return a.n }

// WorkloadID is the SPIFFE ID of the agent's workload j.
func (a *Agent) WorkloadID(j int) (spiffeid.ID, error) {
	id, err := spiffeid.FromString(a.prefix + strconv.Itoa(j))
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("loadtest: workload id: %w", err)
	}
	return id, nil
}

// CSR returns a CSR for workload j: the one made in advance, or a new one
// signed with the agent's workload key. Lazily made CSRs keep the load
// tester's memory flat in the fleet size (a CSR and its ID are ~0.5 KB,
// half a GiB at a million workloads, twice that with Go's heap headroom);
// they cost one ECDSA signature per SVID sent (tens of µs, against the
// server's hundreds). The workloads of one agent share one key pair: the
// server's work per CSR (parse, check the signature, sign) is the same.
func (a *Agent) CSR(j int) ([]byte, error) {
	if a.Workloads != nil {
		return a.Workloads[j].CSR, nil
	}
	id, err := a.WorkloadID(j)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(crand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, a.key)
	if err != nil {
		return nil, fmt.Errorf("loadtest: csr for %s: %w", id, err)
	}
	return csr, nil
}

// workload is what verifySVID checks workload j's SVID against.
func (a *Agent) workload(j int) (*Workload, error) {
	if a.Workloads != nil {
		return a.Workloads[j], nil
	}
	id, err := a.WorkloadID(j)
	if err != nil {
		return nil, err
	}
	return &Workload{ID: id, SPKI: a.spki}, nil
}

// FleetConfig says what to build.
type FleetConfig struct {
	Addrs      []string
	BundlePath string // trust bundle PEM
	AdminCert  string // admin SVID PEM (DATA/admin/svid.pem)
	AdminKey   string
	Agents     int
	Workloads  int    // per agent
	TTLSeconds int64  // entry TTL; 0 = server default
	RunID      string // distinguishes this fleet's agent names and IDs
	// PrecomputeCSRs makes every workload's CSR (and key) in NewFleet
	// instead of when a call is sent (Agent.CSR).
	PrecomputeCSRs bool
	// Parallel bounds setup calls in flight. Default 32.
	Parallel int
	// Progress, if set, is called as agents become ready.
	Progress func(done, total int)
}

// NewFleet creates a join token and the registration entries of every
// agent through the Admin API, bootstraps each agent, warms up its
// connection, and pre-generates every workload key and CSR.
func NewFleet(ctx context.Context, cfg FleetConfig) (*Fleet, error) {
	if cfg.Agents <= 0 || cfg.Workloads <= 0 {
		return nil, errors.New("loadtest: agents and workloads must be positive")
	}
	if cfg.RunID == "" {
		return nil, errors.New("loadtest: run id is required")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 32
	}
	admin, err := client.Dial(ctx, cfg.Addrs, nil, cfg.BundlePath, cfg.AdminCert, cfg.AdminKey)
	if err != nil {
		return nil, fmt.Errorf("loadtest: admin client: %w", err)
	}
	defer admin.Close()
	svid, err := client.LoadSVIDFiles(cfg.AdminCert, cfg.AdminKey)
	if err != nil {
		return nil, err
	}
	td := svid.ID.TrustDomain()
	bundle, err := client.LoadBundleFile(cfg.BundlePath, td)
	if err != nil {
		return nil, err
	}
	f := &Fleet{TrustDomain: td, Bundle: bundle, Agents: make([]*Agent, cfg.Agents),
		Prefix: fmt.Sprintf("spiffe://%s/loadtest/%s/", td.Name(), cfg.RunID), cfg: cfg}
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Parallel)
	for i := range cfg.Agents {
		g.Go(func() error {
			a, err := newAgent(gctx, admin, f, cfg, i)
			if err != nil {
				return err
			}
			f.Agents[i] = a
			if cfg.Progress != nil {
				cfg.Progress(int(done.Add(1)), cfg.Agents)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func newAgent(ctx context.Context, admin *client.Client, f *Fleet, cfg FleetConfig, i int) (*Agent, error) {
	name := fmt.Sprintf("lt-%s-%d", cfg.RunID, i)
	tok, err := admin.Admin().CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Agent: name})
	if err != nil {
		return nil, fmt.Errorf("loadtest: create join token for %s: %w", name, err)
	}
	a := &Agent{Name: name, n: cfg.Workloads, prefix: fmt.Sprintf("%sa%d/w", f.Prefix, i)}
	if cfg.PrecomputeCSRs {
		a.Workloads = make([]*Workload, cfg.Workloads)
	} else {
		a.key, err = ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
		if err != nil {
			return nil, fmt.Errorf("loadtest: workload key: %w", err)
		}
		if a.spki, err = x509.MarshalPKIXPublicKey(a.key.Public()); err != nil {
			return nil, err
		}
	}
	for j := range cfg.Workloads {
		id, err := a.WorkloadID(j)
		if err != nil {
			return nil, err
		}
		resp, err := admin.Admin().CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: name, SpiffeId: id.String(), TtlSeconds: cfg.TTLSeconds})
		if err != nil {
			return nil, fmt.Errorf("loadtest: create entry %s: %w", id, err)
		}
		a.EntryIDs = append(a.EntryIDs, resp.GetEntry().GetId())
		if !cfg.PrecomputeCSRs {
			continue
		}
		csr, key, err := client.NewCSR(id)
		if err != nil {
			return nil, err
		}
		spki, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return nil, err
		}
		// The private key is dropped here: a Go P-256 key with its
		// precomputation is kilobytes, the SPKI 91 bytes.
		a.Workloads[j] = &Workload{ID: id, CSR: csr, SPKI: spki}
	}
	svid, err := client.Bootstrap(ctx, cfg.Addrs, f.TrustDomain, f.Bundle, tok.GetToken())
	if err != nil {
		return nil, fmt.Errorf("loadtest: bootstrap %s: %w", name, err)
	}
	a.ID = svid.ID
	// MaxAttempts 1: the sender does its own retries, so that it can count
	// them; the client's per-address gate holds the agent's calls after a
	// refusal with retry-after (api/client/gate.go).
	c, err := client.New(ctx, client.Config{Addrs: cfg.Addrs, TrustDomain: f.TrustDomain, Bundle: f.Bundle,
		SVID: client.NewRotatingSVID(svid), MaxAttempts: 1})
	if err != nil {
		return nil, err
	}
	a.Client = c
	// Warm up: handshake before the clock starts.
	if _, err := c.Agent().GetBundle(ctx, &tier0v1.GetBundleRequest{}); err != nil {
		c.Close()
		return nil, fmt.Errorf("loadtest: warm up %s: %w", name, err)
	}
	return a, nil
}

// Size is the number of workloads of the fleet.
func (f *Fleet) Size() int {
	n := 0
	for _, a := range f.Agents {
		if a != nil {
			n += a.n
		}
	}
	return n
}

// DeleteEntries deletes the registration entries NewFleet made, through
// the Admin API, and returns how many it deleted. (The join tokens were
// used up by the agents' bootstrap; the server keeps no usable token.)
func (f *Fleet) DeleteEntries(ctx context.Context) (int, error) {
	admin, err := client.Dial(ctx, f.cfg.Addrs, nil, f.cfg.BundlePath, f.cfg.AdminCert, f.cfg.AdminKey)
	if err != nil {
		return 0, fmt.Errorf("loadtest: admin client: %w", err)
	}
	defer admin.Close()
	var deleted atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(f.cfg.Parallel, 1))
	for _, a := range f.Agents {
		if a == nil {
			continue
		}
		for _, id := range a.EntryIDs {
			g.Go(func() error {
				if _, err := admin.Admin().DeleteEntry(gctx, &tier0v1.DeleteEntryRequest{Id: id}); err != nil {
					return fmt.Errorf("loadtest: delete entry %s: %w", id, err)
				}
				deleted.Add(1)
				return nil
			})
		}
	}
	err = g.Wait()
	return int(deleted.Load()), err
}

// Close closes every agent connection.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, a := range f.Agents {
		if a != nil && a.Client != nil {
			wg.Add(1)
			go func() { defer wg.Done(); a.Client.Close() }()
		}
	}
	wg.Wait()
}
