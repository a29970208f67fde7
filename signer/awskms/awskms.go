// Package awskms is a signer over an asymmetric AWS KMS key
// (KeyUsage SIGN_VERIFY), through aws-sdk-go-v2.
//
// Signatures go through the shared KMS throughput control: a client-side
// rate limit, retries with full-jitter backoff on ThrottlingException,
// KMSInternalException, 5xx and transport errors, the per-call timeout and a
// circuit breaker. The SDK's own retries are turned off so that there is
// one retry policy.
package awskms

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tier0-ca/tier0/signer/internal/errs"
	"github.com/tier0-ca/tier0/signer/internal/health"
	"github.com/tier0-ca/tier0/signer/internal/kmsctl"
)

// Client is the part of the AWS KMS API the signer uses.
type Client interface {
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, optFns ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(ctx context.Context, in *kms.SignInput, optFns ...func(*kms.Options)) (*kms.SignOutput, error)
}

// Config configures Open. signer.Open fills Control from signer.Options.
type Config struct {
	Control kmsctl.Config
	// Client replaces the SDK client built from the URI (tests).
	Client Client
}

// URI is a parsed awskms: URI.
type URI struct {
	KeyID    string // key ARN, key id, alias/NAME or alias ARN
	Region   string // region=; default: from the ARN, else the SDK's chain
	Endpoint string // endpoint=: base URL; http only on loopback
	Profile  string // profile=: shared config profile
}

// ParseURI parses awskms:///KEY?region=R&endpoint=URL&profile=P; KEY is an
// ARN, a key id or alias/NAME.
func ParseURI(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "awskms:")
	if !ok {
		return nil, errors.New("signer/awskms: URI must start with \"awskms:\"")
	}
	key, query, _ := strings.Cut(strings.TrimLeft(rest, "/"), "?")
	if key == "" {
		return nil, errors.New("signer/awskms: URI names no key (want awskms:///arn:aws:kms:REGION:ACCOUNT:key/ID or awskms:///alias/NAME)")
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("signer/awskms: bad URI query: %w", err)
	}
	u := &URI{KeyID: key}
	for k, v := range q {
		switch k {
		case "region":
			u.Region = v[0]
		case "endpoint":
			u.Endpoint = v[0]
		case "profile":
			u.Profile = v[0]
		default:
			return nil, fmt.Errorf("signer/awskms: unknown URI query parameter %q", k)
		}
	}
	if u.Region == "" && strings.HasPrefix(key, "arn:") {
		if parts := strings.Split(key, ":"); len(parts) >= 6 {
			u.Region = parts[3]
		}
	}
	if u.Endpoint != "" {
		if strings.Contains(u.Endpoint, "@") { // not echoed: it may hold a password
			return nil, errors.New("signer/awskms: endpoint must not carry credentials (user:password@); AWS credentials come from the standard chain (env, shared config, IMDS)")
		}
		e, err := url.Parse(u.Endpoint)
		if err != nil || (e.Scheme != "https" && e.Scheme != "http") || e.Host == "" {
			return nil, fmt.Errorf("signer/awskms: endpoint %q: want https://host[:port]", u.Endpoint)
		}
		if e.Scheme == "http" && !isLoopback(e.Hostname()) {
			return nil, fmt.Errorf("signer/awskms: endpoint %q: plain http is only allowed to a loopback address", u.Endpoint)
		}
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Signer signs with an AWS KMS key.
type Signer struct {
	client Client
	ctl    *kmsctl.Controller
	keyID  string // ARN from GetPublicKey
	pub    crypto.PublicKey
	spec   types.KeySpec
	closed atomic.Bool
	probe  atomic.Pointer[kms.SignInput] // the recovery probe's request, once the key is known
}

// Open builds the client, reads the public key once and checks that the key
// can sign.
func Open(ctx context.Context, rawURI string, cfg Config) (*Signer, error) {
	u, err := ParseURI(rawURI)
	if err != nil {
		return nil, err
	}
	cfg.Control.Classify = Classify
	if cfg.Control.Backend == "" {
		cfg.Control.Backend = "awskms"
	}
	cfg.Control.Key = u.KeyID
	client := cfg.Client
	if client == nil {
		opts := []func(*config.LoadOptions) error{
			config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		}
		if u.Region != "" {
			opts = append(opts, config.WithRegion(u.Region))
		}
		if u.Profile != "" {
			opts = append(opts, config.WithSharedConfigProfile(u.Profile))
		}
		awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("signer/awskms: load AWS config: %w", err)
		}
		client = kms.NewFromConfig(awsCfg, func(o *kms.Options) {
			if u.Endpoint != "" {
				o.BaseEndpoint = aws.String(u.Endpoint)
			}
		})
	}
	s := &Signer{client: client}
	cfg.Control.Probe = func(ctx context.Context) error { return s.probeOnce(ctx, u.KeyID) }
	s.ctl = kmsctl.New(cfg.Control)
	if err := s.load(ctx, u); err != nil {
		s.ctl.Stop()
		return nil, err
	}
	return s, nil
}

// probeOnce is the breaker's recovery probe: one Sign of a fixed digest
// (GetPublicKey while Open has not yet learned the key's algorithm).
func (s *Signer) probeOnce(ctx context.Context, keyID string) error {
	if in := s.probe.Load(); in != nil {
		_, err := s.client.Sign(ctx, in)
		return err
	}
	_, err := s.client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	return err
}

// load reads and checks the public key.
func (s *Signer) load(ctx context.Context, u *URI) error {
	client := s.client
	var out *kms.GetPublicKeyOutput
	err := s.ctl.Do(ctx, func(ctx context.Context) error {
		var err error
		out, err = client.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(u.KeyID)})
		return err
	})
	if err != nil {
		return fmt.Errorf("signer/awskms: GetPublicKey %s: %w", u.KeyID, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return fmt.Errorf("signer/awskms: key %s has KeyUsage %s, want SIGN_VERIFY", u.KeyID, out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return fmt.Errorf("signer/awskms: key %s: parse public key: %w", u.KeyID, err)
	}
	switch out.KeySpec {
	case types.KeySpecEccNistP256, types.KeySpecEccNistP384:
		_, ok := pub.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("signer/awskms: key %s: KeySpec %s but public key is %T", u.KeyID, out.KeySpec, pub)
		}
	case types.KeySpecRsa2048, types.KeySpecRsa3072, types.KeySpecRsa4096:
		if _, ok := pub.(*rsa.PublicKey); !ok {
			return fmt.Errorf("signer/awskms: key %s: KeySpec %s but public key is %T", u.KeyID, out.KeySpec, pub)
		}
	default:
		return fmt.Errorf("signer/awskms: key %s has KeySpec %s; supported: ECC_NIST_P256, ECC_NIST_P384, RSA_2048/3072/4096", u.KeyID, out.KeySpec)
	}
	s.pub, s.spec = pub, out.KeySpec
	s.keyID = aws.ToString(out.KeyId)
	if s.keyID == "" {
		s.keyID = u.KeyID
	}
	h := map[types.KeySpec]crypto.Hash{types.KeySpecEccNistP384: crypto.SHA384}[s.spec]
	if h == 0 {
		h = crypto.SHA256
	}
	alg, err := s.algorithm(make([]byte, h.Size()), h)
	if err != nil {
		return err
	}
	s.probe.Store(&kms.SignInput{KeyId: aws.String(s.keyID), Message: make([]byte, h.Size()), MessageType: types.MessageTypeDigest, SigningAlgorithm: alg})
	return nil
}

// Public returns the public key read at Open.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID returns the key ARN.
func (s *Signer) KeyID() string { return s.keyID }

// Health reports whether the key can sign (the KMS circuit breaker).
func (s *Signer) Health() health.Health { return s.ctl.Health() }

// Close makes later Sign calls fail with ErrClosed and stops the
// recovery prober.
func (s *Signer) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.ctl.Stop()
	}
	return nil
}

// Sign signs digest (MessageType DIGEST); rand is ignored.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.SignContext(context.Background(), digest, opts)
}

// SignContext signs digest under the rate limit, retry policy and breaker.
func (s *Signer) SignContext(ctx context.Context, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if s.closed.Load() {
		return nil, errs.ErrClosed
	}
	alg, err := s.algorithm(digest, opts)
	if err != nil {
		return nil, err
	}
	in := &kms.SignInput{
		KeyId:            aws.String(s.keyID),
		Message:          digest,
		MessageType:      types.MessageTypeDigest,
		SigningAlgorithm: alg,
	}
	var sig []byte
	err = s.ctl.Do(ctx, func(ctx context.Context) error {
		out, err := s.client.Sign(ctx, in)
		if err != nil {
			return err
		}
		if len(out.Signature) == 0 {
			return errors.New("signer/awskms: empty signature in Sign response")
		}
		sig = out.Signature
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("signer/awskms: sign with %s: %w", s.keyID, err)
	}
	return sig, nil
}

func (s *Signer) algorithm(digest []byte, opts crypto.SignerOpts) (types.SigningAlgorithmSpec, error) {
	if opts == nil {
		return "", errors.New("signer/awskms: nil SignerOpts")
	}
	h := opts.HashFunc()
	if h == 0 || len(digest) != h.Size() {
		return "", fmt.Errorf("signer/awskms: need a %v digest, got %d bytes", h, len(digest))
	}
	bits := map[crypto.Hash]string{crypto.SHA256: "256", crypto.SHA384: "384", crypto.SHA512: "512"}[h]
	if bits == "" {
		return "", fmt.Errorf("signer/awskms: hash %v is not supported (want SHA-256/384/512)", h)
	}
	switch s.pub.(type) {
	case *ecdsa.PublicKey:
		want := map[types.KeySpec]crypto.Hash{types.KeySpecEccNistP256: crypto.SHA256, types.KeySpecEccNistP384: crypto.SHA384}[s.spec]
		if h != want {
			return "", fmt.Errorf("signer/awskms: key spec %s cannot sign a %v digest", s.spec, h)
		}
		return types.SigningAlgorithmSpec("ECDSA_SHA_" + bits), nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			if pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != h.Size() {
				return "", fmt.Errorf("signer/awskms: RSA-PSS salt length must equal the hash length, got %d", pss.SaltLength)
			}
			return types.SigningAlgorithmSpec("RSASSA_PSS_SHA_" + bits), nil
		}
		return types.SigningAlgorithmSpec("RSASSA_PKCS1_V1_5_SHA_" + bits), nil
	}
	return "", fmt.Errorf("signer/awskms: unsupported public key %T", s.pub)
}

// Classify sorts an AWS error for the retry policy and circuit breaker.
func Classify(err error) kmsctl.Class {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "LimitExceededException":
			return kmsctl.Throttled
		case "KMSInternalException", "DependencyTimeoutException", "InternalFailure", "ServiceUnavailable", "ServiceUnavailableException":
			return kmsctl.Unavailable
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch code := re.HTTPStatusCode(); {
		case code == 429:
			return kmsctl.Throttled
		case code >= 500, code == 0: // 0: the request was never answered
			return kmsctl.Unavailable
		}
		return kmsctl.Permanent
	}
	if ae != nil {
		return kmsctl.Permanent
	}
	// No HTTP response at all: connection refused, reset, DNS, TLS.
	if errors.Is(err, context.Canceled) {
		return kmsctl.Permanent
	}
	var opErr *net.OpError
	var se *smithy.OperationError
	if errors.As(err, &opErr) || errors.As(err, &se) {
		return kmsctl.Unavailable
	}
	return kmsctl.Permanent
}
