package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// service is one long-running duty of `tier0-agent run`.
type service interface {
	Name() string
	Run(ctx context.Context) error
}

func newRunCmd(e *env) *cobra.Command {
	var bundleEvery, syncEvery time.Duration
	var socket string
	var socketMode uint32
	var renewFraction float64
	var batch int
	var k8s k8sFlags
	var sds sdsNames
	var tokenFile, bundlePath string
	var att attestFlags
	cmd := &cobra.Command{
		Use:   "run [--socket PATH]",
		Short: "serve the SPIFFE Workload API and Envoy SDS, and keep the agent SVID and the trust bundle fresh until SIGINT/SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := e.firstStart(cmd.Context(), tokenFile, bundlePath, &att); err != nil {
				return err
			}
			a, err := e.loadAgent()
			if err != nil {
				return err
			}
			if err := a.checkExpiry(e.now()); err != nil {
				return err
			}
			if socket == "" {
				socket = filepath.Join(e.dataDir, "agent.sock")
			}
			if err := sds.validate(); err != nil {
				return err
			}
			if socketMode > 0o777 {
				return fmt.Errorf("--socket-mode %o: want permission bits only", socketMode)
			}
			c, err := newCache(e, a, syncEvery, renewFraction, batch)
			if err != nil {
				return err
			}
			creds, err := k8s.creds(e)
			if err != nil {
				return err
			}
			services := []service{
				&renewer{e: e, a: a},
				&bundleRefresher{e: e, a: a, every: bundleEvery, onChange: c.notify},
				c,
				&workloadAPI{e: e, a: a, c: c, socket: socket, mode: os.FileMode(socketMode), creds: creds, sds: sds},
			}
			return runServices(cmd.Context(), e, services)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&bundleEvery, "bundle-refresh", 5*time.Minute, "how often to refresh the trust bundle")
	f.StringVar(&socket, "socket", "", "Workload API Unix socket (default DATA/agent.sock)")
	f.Uint32Var(&socketMode, "socket-mode", 0o777, "permission bits of the socket (its directory is created 0755)")
	f.DurationVar(&syncEvery, "sync-interval", 30*time.Second, "how often to refresh the registration entries")
	f.Float64Var(&renewFraction, "renew-fraction", 0.5, "renew workload SVIDs after this fraction of their remaining lifetime (+-10% jitter)")
	f.IntVar(&batch, "batch", 100, "workload SVIDs per MintX509SVIDs call")
	k8s.register(f, e)
	f.StringVar(&sds.defaultSVID, "sds-default-svid-name", "default", "SDS resource name of the caller's first SVID (by SPIFFE ID)")
	f.StringVar(&sds.bundle, "sds-default-bundle-name", "ROOTCA", "SDS resource name of our trust domain's bundle (a validation context)")
	f.StringVar(&sds.allBundles, "sds-default-all-bundles-name", "ALL", "SDS resource name of our and the permitted federated bundles (a SPIFFE validator config)")
	f.StringVar(&tokenFile, "join-token-file", "", "first start only: bootstrap with the join token in this file when the data dir has no agent identity yet (a DaemonSet's per-node Secret)")
	f.StringVar(&bundlePath, "bundle", "", "first start only: PEM root certificates of the tier0 CA, for --join-token-file or --attestor")
	att.register(f) // first start only: node attestation instead of --join-token-file
	return cmd
}

// firstStart bootstraps the agent from a join token file, or by node
// attestation (--attestor, e.g. k8s_psat in a DaemonSet), when its data
// dir has no identity yet; with an identity neither is used (a token file
// may be gone: tokens are one-time).
func (e *env) firstStart(ctx context.Context, tokenFile, bundlePath string, att *attestFlags) error {
	if tokenFile != "" && att.attestor != "" {
		return errors.New("--join-token-file or --attestor, not both")
	}
	if tokenFile == "" && att.attestor == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(agentDir(e.dataDir), "config.json")); err == nil {
		return nil
	}
	if att.attestor != "" {
		return e.attestBootstrap(ctx, att, bundlePath, "")
	}
	raw, err := os.ReadFile(tokenFile)
	if err != nil {
		return fmt.Errorf("no agent identity in %s yet and no join token: %w", e.dataDir, err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return fmt.Errorf("no agent identity in %s yet and the join token file %s is empty", e.dataDir, tokenFile)
	}
	return e.bootstrap(ctx, token, bundlePath, "")
}

// runServices runs every service until ctx ends (a clean stop) or one
// fails (the error is returned and the others are stopped).
func runServices(ctx context.Context, e *env, services []service) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(services))
	for _, s := range services {
		go func() {
			err := s.Run(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", s.Name(), err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	e.logger().InfoContext(ctx, "tier0-agent running", "data_dir", e.dataDir)
	var first error
	for range services {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// renewer renews the agent SVID at half-life (+-10% jitter), retrying with
// backoff on failure. It fails only when the SVID has expired.
type renewer struct {
	e *env
	a *agent
}

func (r *renewer) Name() string { return "renew agent svid" }

func (r *renewer) Run(ctx context.Context) error {
	log := r.e.logger()
	retry := time.Duration(0)
	for {
		wait := r.nextRenewal()
		if retry > 0 {
			wait = retry
		}
		if backoff.Sleep(ctx, wait) != nil {
			return nil //nolint:nilerr // stopped, not failed
		}
		svid, err := r.e.renew(ctx, r.a)
		if err == nil {
			retry = 0
			log.InfoContext(ctx, "renewed agent SVID", "id", svid.ID, "expires", svid.Certificates[0].NotAfter)
			continue
		}
		if ctx.Err() != nil {
			return nil //nolint:nilerr // stopped, not failed
		}
		if xerr := r.a.checkExpiry(r.e.now()); xerr != nil {
			return xerr
		}
		retry = r.backoff(retry)
		log.WarnContext(ctx, "agent SVID renewal failed", "err", describe(err), "retry_in", retry,
			"expires", r.a.current().Certificates[0].NotAfter)
	}
}

// nextRenewal is the time until half-life, jittered by +-10% of the half
// lifetime, and never negative.
func (r *renewer) nextRenewal() time.Duration {
	leaf := r.a.current().Certificates[0]
	half := leaf.NotAfter.Sub(leaf.NotBefore) / 2
	jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(half))
	return max(0, r.a.halfLife().Add(jitter).Sub(r.e.now()))
}

// backoff doubles from 1s up to 1m, but never past a tenth of the time left.
func (r *renewer) backoff(prev time.Duration) time.Duration {
	next := min(max(time.Second, 2*prev), time.Minute)
	left := r.a.current().Certificates[0].NotAfter.Sub(r.e.now())
	return max(100*time.Millisecond, min(next, left/10))
}

// bundleRefresher fetches the trust bundle every period and saves changes.
type bundleRefresher struct {
	e        *env
	a        *agent
	every    time.Duration
	onChange func() // called after the bundle changed
}

func (b *bundleRefresher) Name() string { return "refresh bundle" }

func (b *bundleRefresher) Run(ctx context.Context) error {
	if b.every <= 0 {
		return errors.New("--bundle-refresh must be positive")
	}
	log := b.e.logger()
	for {
		if backoff.Sleep(ctx, b.every) != nil {
			return nil //nolint:nilerr // stopped, not failed
		}
		c, err := b.e.dial(ctx, b.a)
		if err != nil {
			return err
		}
		changed, err := b.e.refreshBundle(ctx, c, b.a)
		c.Close()
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "bundle refresh failed", "err", describe(err))
		case changed:
			log.InfoContext(ctx, "trust bundle updated", "roots", len(b.a.bundle.X509Authorities()))
			if b.onChange != nil {
				b.onChange()
			}
		}
	}
}
