// Package keys is the custody of the CA's keys in a running node: the key
// manager (root keys named by signer URIs, the first root made on first
// start, direct or delegated signing, following root activations in raft
// state, pruning retired roots; api.CAManager for `tier0 ca`), the audit
// key that signs checkpoints, and the node's JWT signing keys. See
// docs/DESIGN.md "Key custody".
package keys

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/ca/rotation"
)

// Signing modes. The CA root key is named by a signer URI.
//
//   - Direct: the root key signs every SVID (the issuer is the self-signed
//     root; chains are just the leaf). Default for pkcs11:. A local HSM
//     signs at tens of thousands per second with sub-millisecond latency,
//     so there is no throughput reason to let a key leave it.
//   - Delegated: each node makes an in-memory P-256 key and the root key
//     signs its short-lived intermediate (ca/rotation). Default for awskms:
//     and gcpkms:: a KMS Sign is a 10-50 ms network call under a per-account
//     quota (AWS ECC: 1,000/s per region) and a KMS outage would otherwise
//     stop issuance at once; delegated needs one KMS call per node every
//     few hours and rides out outages of up to a third of the lifetime.
//     Also the default for the dev soft: key, so the embedded default has a
//     root key (on disk) and a separate issuing key (in memory only), as a
//     production CA would, and every dev run exercises the rotation path.
const (
	Direct    = "direct"
	Delegated = "delegated"

	DefaultIntermediateTTL = 6 * time.Hour            // the smallest lifetime the 6 x 60m rule allows
	DefaultRootTTL         = 5 * 365 * 24 * time.Hour // root certificates; rotate with `tier0 ca`
	DefaultSignerTimeout   = 5 * time.Second
	DefaultRootProbe       = 30 * time.Second // delegated mode: how often the root key is test-signed
	pruneMargin            = 5 * time.Minute  // retired roots leave the bundle MaxTTL + this after retiring
	reconcileEvery         = time.Second
	// DefaultPublishWindow: 2 x the agents' default --bundle-refresh (5m);
	// `tier0-agent run` also refreshes at every entry sync (30s), and
	// agents that only run `fetch` must run it at least this often.
	DefaultPublishWindow = 10 * time.Minute
)

// Settings are the operator's key settings (`tier0 server` flags).
type Settings struct {
	Signer          string        // URI of the CA root key on first start; "" = a DEV-ONLY soft key in DATA/ca/root.key
	Mode            string        // Direct, Delegated, or "" (direct for pkcs11, else delegated)
	IntermediateTTL time.Duration // delegated: intermediate lifetime; default DefaultIntermediateTTL
	AllowShort      bool          // TESTS ONLY: any IntermediateTTL, SVIDs capped below 15m
	RateLimit       float64       // KMS signs per second (0: the provider default; negative: unlimited)
	Timeout         time.Duration // one CA key signature, retries included; default DefaultSignerTimeout
	RootTTL         time.Duration // root certificates made here; default DefaultRootTTL
	// RootProbe is how often, in delegated mode, the active root key signs
	// a test digest (signer.Probe), so that a dead HSM/KMS shows in the
	// logs, metrics and health before the next intermediate rotation needs
	// it; default DefaultRootProbe. In direct mode every SVID is a probe.
	RootProbe time.Duration
	// PublishWindow is how long a prepared root must have been in the
	// bundle before `tier0 ca activate` makes it active without --force;
	// default DefaultPublishWindow. At least 2 x the agents' sync interval.
	PublishWindow time.Duration
}

// Defaults fills zero durations.
func (s *Settings) Defaults() {
	if s.IntermediateTTL == 0 {
		s.IntermediateTTL = DefaultIntermediateTTL
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultSignerTimeout
	}
	if s.RootTTL == 0 {
		s.RootTTL = DefaultRootTTL
	}
	if s.RootProbe == 0 {
		s.RootProbe = DefaultRootProbe
	}
	if s.PublishWindow == 0 {
		s.PublishWindow = DefaultPublishWindow
	}
}

// Validate checks the settings against the maximum SVID TTL.
func (s *Settings) Validate(maxSVID time.Duration) error {
	switch s.Mode {
	case "", Direct, Delegated:
	default:
		return fmt.Errorf("--signing-mode %q: want direct or delegated", s.Mode)
	}
	if min := rotation.MinLifetimeFactor * maxSVID; s.IntermediateTTL < min && !s.AllowShort {
		return fmt.Errorf("--intermediate-ttl %v is below %d x the maximum SVID TTL (%v): SVIDs would outlive or be capped by their issuer", s.IntermediateTTL, rotation.MinLifetimeFactor, min)
	}
	if s.PublishWindow < 0 {
		return fmt.Errorf("--ca-publish-window %v: want a positive duration", s.PublishWindow)
	}
	if s.IntermediateTTL <= 0 || s.Timeout <= 0 || s.RootProbe <= 0 || s.RootTTL < 24*time.Hour {
		return errors.New("--intermediate-ttl, --signer-timeout and --root-probe-interval must be positive, --root-ttl at least 24h")
	}
	return nil
}

// MinCappedTTL is ca.Config.MinCappedTTL: 0 (the default, MinTTL) unless
// tests shrink intermediates below the SVID TTL bounds.
func (s *Settings) MinCappedTTL() time.Duration {
	if s.AllowShort {
		return time.Second
	}
	return 0
}

func defaultMode(uri string) string {
	if scheme(uri) == "pkcs11" {
		return Direct
	}
	return Delegated
}

func scheme(uri string) string { s, _, _ := strings.Cut(uri, ":"); return s }
