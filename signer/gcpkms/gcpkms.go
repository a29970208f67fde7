// Package gcpkms is a signer over a Google Cloud KMS asymmetric signing key
// version, through cloud.google.com/go/kms/apiv1.
//
// Requests and responses are integrity-checked with CRC32C (Castagnoli) as
// Google recommends: the public key PEM against pem_crc32c, the digest via
// digest_crc32c/verified_digest_crc32c, the signature against
// signature_crc32c. A mismatch is a retryable ErrChecksum. Calls go through
// the shared KMS throughput control (rate limit, retries on
// ResourceExhausted/Unavailable/DeadlineExceeded, timeout, circuit breaker);
// the client library's own retries are turned off.
package gcpkms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/kmsctl"
)

// Client is the part of the Cloud KMS API the signer uses.
type Client interface {
	GetPublicKey(ctx context.Context, req *kmspb.GetPublicKeyRequest, opts ...gax.CallOption) (*kmspb.PublicKey, error)
	AsymmetricSign(ctx context.Context, req *kmspb.AsymmetricSignRequest, opts ...gax.CallOption) (*kmspb.AsymmetricSignResponse, error)
	Close() error
}

// Config configures Open. signer.Open fills Control from signer.Options.
type Config struct {
	Control kmsctl.Config
	// Client replaces the client built from the URI (tests).
	Client Client
}

// URI is a parsed gcpkms: URI.
type URI struct {
	Name     string // projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N
	Endpoint string // endpoint=host:port
	Insecure bool   // insecure=1: plaintext, no auth; loopback endpoints only
}

var nameParts = []string{"projects", "locations", "keyRings", "cryptoKeys", "cryptoKeyVersions"}

// ParseURI parses gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N[?endpoint=H:P[&insecure=1]].
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "gcpkms:")
	if !ok {
		return nil, errors.New("signer/gcpkms: URI must start with \"gcpkms:\"")
	}
	name, query, _ := strings.Cut(strings.TrimLeft(rest, "/"), "?")
	parts := strings.Split(name, "/")
	valid := len(parts) == 2*len(nameParts)
	for i := 0; valid && i < len(parts); i += 2 {
		valid = parts[i] == nameParts[i/2] && parts[i+1] != ""
	}
	if !valid {
		return nil, fmt.Errorf("signer/gcpkms: key name %q: want projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/N", name)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("signer/gcpkms: bad URI query: %w", err)
	}
	u := &URI{Name: name}
	for k, v := range q {
		switch k {
		case "endpoint":
			u.Endpoint = v[0]
		case "insecure":
			u.Insecure = v[0] == "1" || v[0] == "true"
		default:
			return nil, fmt.Errorf("signer/gcpkms: unknown URI query parameter %q", k)
		}
	}
	if strings.Contains(u.Endpoint, "@") { // not echoed: it may hold a password
		return nil, errors.New("signer/gcpkms: endpoint must be host:port without credentials (user:password@); credentials come from Application Default Credentials")
	}
	if u.Insecure {
		host, _, err := net.SplitHostPort(u.Endpoint)
		ip := net.ParseIP(host)
		if err != nil || !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return nil, fmt.Errorf("signer/gcpkms: insecure=1 needs a loopback endpoint=127.0.0.1:PORT, got %q", u.Endpoint)
		}
	}
	return u, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32c(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// noRetry turns off the client library's retries: kmsctl owns the policy.
var noRetry = gax.WithRetry(func() gax.Retryer { return nil })

// waitForReady makes the recovery probe wait (up to its deadline) for the
// channel to connect instead of failing at once on a channel that is
// backing off between connection attempts.
var waitForReady = gax.WithGRPCOptions(grpc.WaitForReady(true))

// reconnect bounds the channel's backoff between connection attempts to a
// lost endpoint (gRPC's default grows to 120s) so that a KMS endpoint that
// comes back is connected to again within about a second.
var reconnect = grpc.WithConnectParams(grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
})

// Signer signs with a Cloud KMS key version.
type Signer struct {
	client  Client
	ctl     *kmsctl.Controller
	name    string
	pub     crypto.PublicKey
	alg     kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	hash    crypto.Hash
	pss     bool
	closed  atomic.Bool
	closeMu sync.Once
	probe   atomic.Pointer[kmspb.AsymmetricSignRequest] // the recovery probe's request, once the key is known
}

// Open dials the KMS, reads and checks the public key once.
func Open(ctx context.Context, rawURI string, cfg Config) (*Signer, error) {
	u, err := ParseURI(rawURI)
	if err != nil {
		return nil, err
	}
	cfg.Control.Classify = Classify
	if cfg.Control.Backend == "" {
		cfg.Control.Backend = "gcpkms"
	}
	cfg.Control.Key = u.Name
	client := cfg.Client
	if client == nil {
		opts := []option.ClientOption{option.WithGRPCDialOption(reconnect)}
		if u.Endpoint != "" {
			opts = append(opts, option.WithEndpoint(u.Endpoint))
		}
		if u.Insecure {
			opts = append(opts, option.WithoutAuthentication(),
				option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
		}
		c, err := kms.NewKeyManagementClient(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("signer/gcpkms: new client: %w", err)
		}
		client = c
	}
	s := &Signer{client: client, name: u.Name}
	cfg.Control.Probe = s.probeOnce
	s.ctl = kmsctl.New(cfg.Control)
	if err := s.loadPublicKey(ctx); err != nil {
		s.ctl.Stop()
		client.Close()
		return nil, err
	}
	d := make([]byte, s.hash.Size())
	s.probe.Store(&kmspb.AsymmetricSignRequest{Name: s.name, Digest: digestOf(s.hash, d), DigestCrc32C: wrapperspb.Int64(crc32c(d))})
	return s, nil
}

// probeOnce is the breaker's recovery probe: one AsymmetricSign of a fixed
// digest (GetPublicKey while Open has not yet learned the key's
// algorithm) that waits for the channel to be ready, up to the probe's
// deadline, instead of failing on a channel between connection attempts.
func (s *Signer) probeOnce(ctx context.Context) error {
	if req := s.probe.Load(); req != nil {
		_, err := s.client.AsymmetricSign(ctx, req, noRetry, waitForReady)
		return err
	}
	_, err := s.client.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: s.name}, noRetry, waitForReady)
	return err
}

func digestOf(h crypto.Hash, digest []byte) *kmspb.Digest {
	switch h {
	case crypto.SHA256:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha256{Sha256: digest}}
	case crypto.SHA384:
		return &kmspb.Digest{Digest: &kmspb.Digest_Sha384{Sha384: digest}}
	}
	return &kmspb.Digest{Digest: &kmspb.Digest_Sha512{Sha512: digest}}
}

func (s *Signer) loadPublicKey(ctx context.Context) error {
	var pk *kmspb.PublicKey
	err := s.ctl.Do(ctx, func(ctx context.Context) error {
		var err error
		pk, err = s.client.GetPublicKey(ctx, &kmspb.GetPublicKeyRequest{Name: s.name}, noRetry)
		if err != nil {
			return err
		}
		if pk.GetPemCrc32C() != nil && crc32c([]byte(pk.GetPem())) != pk.GetPemCrc32C().GetValue() {
			return fmt.Errorf("%w: GetPublicKey pem_crc32c", errs.ErrChecksum)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("signer/gcpkms: GetPublicKey %s: %w", s.name, err)
	}
	block, _ := pem.Decode([]byte(pk.GetPem()))
	if block == nil {
		return fmt.Errorf("signer/gcpkms: %s: public key is not PEM", s.name)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("signer/gcpkms: %s: parse public key: %w", s.name, err)
	}
	s.alg = pk.GetAlgorithm()
	a := kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_name[int32(s.alg)]
	switch {
	case strings.HasPrefix(a, "EC_SIGN_P256_SHA256"), strings.HasPrefix(a, "EC_SIGN_P384_SHA384"):
		_, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("signer/gcpkms: %s: algorithm %s but public key is %T", s.name, a, pub)
		}
	case strings.HasPrefix(a, "RSA_SIGN_PSS_"), strings.HasPrefix(a, "RSA_SIGN_PKCS1_"):
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return fmt.Errorf("signer/gcpkms: %s: algorithm %s but public key is %T", s.name, a, pub)
		}
		s.pss = strings.HasPrefix(a, "RSA_SIGN_PSS_")
	default:
		return fmt.Errorf("signer/gcpkms: %s: algorithm %s cannot sign a digest (supported: EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, RSA_SIGN_PSS_*, RSA_SIGN_PKCS1_*)", s.name, a)
	}
	switch {
	case strings.HasSuffix(a, "SHA256"):
		s.hash = crypto.SHA256
	case strings.HasSuffix(a, "SHA384"):
		s.hash = crypto.SHA384
	case strings.HasSuffix(a, "SHA512"):
		s.hash = crypto.SHA512
	default:
		return fmt.Errorf("signer/gcpkms: %s: algorithm %s has no supported digest", s.name, a)
	}
	s.pub = pub
	return nil
}

// Public returns the public key read at Open.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID returns the key version's resource name.
func (s *Signer) KeyID() string { return s.name }

// Health reports whether the key can sign (the KMS circuit breaker).
func (s *Signer) Health() health.Health { return s.ctl.Health() }

// SignerOpts returns the options this key version signs with: its
// algorithm fixes the digest and the padding.
func (s *Signer) SignerOpts() crypto.SignerOpts {
	if s.pss {
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: s.hash}
	}
	return s.hash
}

// Close stops the recovery prober and closes the connection; later Sign
// calls fail with ErrClosed.
func (s *Signer) Close() error {
	var err error
	s.closeMu.Do(func() {
		s.closed.Store(true)
		s.ctl.Stop()
		err = s.client.Close()
	})
	if err != nil {
		return fmt.Errorf("signer/gcpkms: close: %w", err)
	}
	return nil
}

// Sign signs digest; rand is ignored.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest with AsymmetricSign and checks the CRC32Cs.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	if opts == nil {
		return nil, errors.New("signer/gcpkms: nil SignerOpts")
	}
	if h := opts.HashFunc(); h != s.hash || len(digest) != h.Size() {
		return nil, fmt.Errorf("signer/gcpkms: %s signs %v digests, got %v (%d bytes)", s.alg, s.hash, h, len(digest))
	}
	if pss, ok := opts.(*rsa.PSSOptions); ok != s.pss {
		return nil, fmt.Errorf("signer/gcpkms: key algorithm %s does not match the requested padding (PSS: %v)", s.alg, ok)
	} else if ok && pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != s.hash.Size() {
		return nil, fmt.Errorf("signer/gcpkms: RSA-PSS salt length must equal the hash length, got %d", pss.SaltLength)
	}
	req := &kmspb.AsymmetricSignRequest{Name: s.name, Digest: digestOf(s.hash, digest), DigestCrc32C: wrapperspb.Int64(crc32c(digest))}
	var sig []byte
	err := s.ctl.Do(ctx, func(ctx context.Context) error {
		resp, err := s.client.AsymmetricSign(ctx, req, noRetry)
		if err != nil {
			return err
		}
		if !resp.GetVerifiedDigestCrc32C() {
			return fmt.Errorf("%w: the KMS did not verify digest_crc32c (request corrupted in transit)", errs.ErrChecksum)
		}
		if resp.GetSignatureCrc32C() == nil || crc32c(resp.GetSignature()) != resp.GetSignatureCrc32C().GetValue() {
			return fmt.Errorf("%w: signature_crc32c does not match the signature (response corrupted in transit)", errs.ErrChecksum)
		}
		if resp.GetName() != "" && resp.GetName() != s.name {
			return fmt.Errorf("signer/gcpkms: response is for key %s, want %s", resp.GetName(), s.name)
		}
		sig = resp.GetSignature()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("signer/gcpkms: sign with %s: %w", s.name, err)
	}
	return sig, nil
}

// Classify sorts a Cloud KMS error for the retry policy and circuit breaker.
func Classify(err error) kmsctl.Class {
	if errors.Is(err, errs.ErrChecksum) {
		return kmsctl.Corrupt
	}
	switch status.Code(err) {
	case codes.ResourceExhausted:
		return kmsctl.Throttled
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Aborted:
		return kmsctl.Unavailable
	}
	return kmsctl.Permanent
}
