// Package awsfake is a local AWS KMS endpoint speaking the real AWS JSON 1.1
// protocol (X-Amz-Target: TrentService.*) for CreateKey, CreateAlias,
// GetPublicKey and Sign, with in-memory ECC_NIST_P256, ECC_NIST_P384 and
// RSA_2048 keys and the fault knobs of kmsfake. Requests are not
// authenticated (SigV4 headers are ignored). For tests and
// `tier0 dev kms-aws` only.
package awsfake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/tier0-ca/tier0/signer/kmsfake"
)

// Server is the fake KMS. Its embedded Faults are the fault knobs.
type Server struct {
	kmsfake.Faults
	Region, Account string

	mu      sync.Mutex
	keys    map[string]*key   // by key id
	aliases map[string]string // alias/NAME -> key id
	srv     *http.Server      // the last Serve's, for Stop
	signs   atomic.Int64
}

type key struct {
	id, arn string
	spec    string
	priv    crypto.Signer
	created time.Time
}

// New returns an empty fake for us-east-1, account 111122223333.
func New() *Server {
	return &Server{Region: "us-east-1", Account: "111122223333", keys: map[string]*key{}, aliases: map[string]string{}}
}

// Serve serves the fake on lis until lis is closed or Stop. Serve again
// (on a new listener, e.g. on the same port) after Stop to bring the
// endpoint back with the same keys.
func (s *Server) Serve(lis net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return srv.Serve(lis)
}

// Stop closes the listener and every open connection: the endpoint
// disappears, as a KMS endpoint or the network path to it does.
func (s *Server) Stop() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// ClientEnv is the environment an AWS SDK client needs to talk to the
// fake: static test credentials (not checked), no instance metadata and no
// shared config files.
func ClientEnv() map[string]string {
	return map[string]string{ //nolint:gosec // G101: test credentials the fake does not check
		"AWS_ACCESS_KEY_ID":           "AKIDTIER0TEST",
		"AWS_SECRET_ACCESS_KEY":       "tier0-test-secret",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             "/nonexistent",
		"AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
	}
}

// Start serves on addr in the background (port 0: any) and returns the
// address; after Stop, Start on the same address brings the endpoint back.
func (s *Server) Start(addr string) (string, error) { return kmsfake.Start(addr, s.Serve) }

// Signs is the number of successful Sign calls.
func (s *Server) Signs() int64 { return s.signs.Load() }

// CreateKey makes a SIGN_VERIFY key of spec (ECC_NIST_P256, ECC_NIST_P384
// or RSA_2048) and returns its ARN.
func (s *Server) CreateKey(spec string) (string, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch spec {
	case "ECC_NIST_P256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECC_NIST_P384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "RSA_2048":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return "", fmt.Errorf("awsfake: unsupported KeySpec %q", spec)
	}
	if err != nil {
		return "", err
	}
	id := uuid.NewString()
	k := &key{id: id, arn: s.arn("key/" + id), spec: spec, priv: priv, created: time.Now()}
	s.mu.Lock()
	s.keys[id] = k
	s.mu.Unlock()
	return k.arn, nil
}

// CreateAlias points alias/NAME at a key (id or ARN).
func (s *Server) CreateAlias(alias, keyID string) error {
	if !strings.HasPrefix(alias, "alias/") {
		return fmt.Errorf("awsfake: alias %q must start with alias/", alias)
	}
	k := s.lookup(keyID)
	if k == nil {
		return fmt.Errorf("awsfake: no key %q", keyID)
	}
	s.mu.Lock()
	s.aliases[alias] = k.id
	s.mu.Unlock()
	return nil
}

func (s *Server) arn(resource string) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:%s", s.Region, s.Account, resource)
}

// lookup resolves a key id, key ARN, alias/NAME or alias ARN.
func (s *Server) lookup(ref string) *key {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rest, ok := strings.CutPrefix(ref, s.arn("")); ok {
		ref = rest
	}
	ref = strings.TrimPrefix(ref, "key/")
	if id, ok := s.aliases[ref]; ok {
		ref = id
	}
	return s.keys[ref]
}

type apiError struct {
	status   int
	typ, msg string
}

func (e *apiError) Error() string { return e.typ + ": " + e.msg }

func errorf(status int, typ, format string, args ...any) *apiError {
	return &apiError{status: status, typ: typ, msg: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements the AWS JSON 1.1 protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if r.Method != http.MethodPost || !ok {
		writeErr(w, errorf(400, "UnknownOperationException", "unknown operation %q", target))
		return
	}
	fault, err := s.Before(r.Context())
	if err != nil {
		return // the client went away during the delay
	}
	switch fault {
	case kmsfake.Throttled:
		writeErr(w, errorf(400, "ThrottlingException", "Rate exceeded"))
		return
	case kmsfake.Unavailable:
		writeErr(w, errorf(500, "KMSInternalException", "The request was rejected because an internal exception occurred (injected)"))
		return
	}
	var out any
	var aerr *apiError
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	switch op {
	case "CreateKey":
		var in struct{ KeySpec, KeyUsage, CustomerMasterKeySpec string }
		if err := dec.Decode(&in); err != nil {
			aerr = errorf(400, "SerializationException", "%v", err)
			break
		}
		out, aerr = s.createKey(in.KeySpec+in.CustomerMasterKeySpec, in.KeyUsage)
	case "CreateAlias":
		var in struct{ AliasName, TargetKeyId string }
		if err := dec.Decode(&in); err != nil {
			aerr = errorf(400, "SerializationException", "%v", err)
			break
		}
		if err := s.CreateAlias(in.AliasName, in.TargetKeyId); err != nil {
			aerr = errorf(400, "NotFoundException", "%v", err)
		}
		out = struct{}{}
	case "GetPublicKey":
		var in struct{ KeyId string }
		if err := dec.Decode(&in); err != nil {
			aerr = errorf(400, "SerializationException", "%v", err)
			break
		}
		out, aerr = s.getPublicKey(in.KeyId)
	case "Sign":
		var in struct {
			KeyId, MessageType, SigningAlgorithm string
			Message                              []byte
		}
		if err := dec.Decode(&in); err != nil {
			aerr = errorf(400, "SerializationException", "%v", err)
			break
		}
		out, aerr = s.sign(in.KeyId, in.Message, in.MessageType, in.SigningAlgorithm)
	default:
		aerr = errorf(400, "UnsupportedOperationException", "awsfake does not implement %s", op)
	}
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	_ = json.NewEncoder(w).Encode(out)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", uuid.NewString())
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
}

type keyMetadata struct {
	KeyId, Arn, AWSAccountId, KeyUsage, KeySpec, CustomerMasterKeySpec, KeyState, Origin, KeyManager string
	CreationDate                                                                                     float64
	Enabled                                                                                          bool
	SigningAlgorithms                                                                                []string
}

func algorithms(spec string) []string {
	switch spec {
	case "ECC_NIST_P256":
		return []string{"ECDSA_SHA_256"}
	case "ECC_NIST_P384":
		return []string{"ECDSA_SHA_384"}
	}
	var out []string
	for _, b := range []string{"256", "384", "512"} {
		out = append(out, "RSASSA_PKCS1_V1_5_SHA_"+b, "RSASSA_PSS_SHA_"+b)
	}
	return out
}

func (s *Server) createKey(spec, usage string) (any, *apiError) {
	if usage != "" && usage != "SIGN_VERIFY" {
		return nil, errorf(400, "ValidationException", "awsfake only makes SIGN_VERIFY keys, not %s", usage)
	}
	arn, err := s.CreateKey(spec)
	if err != nil {
		return nil, errorf(400, "ValidationException", "%v", err)
	}
	k := s.lookup(arn)
	return map[string]any{"KeyMetadata": keyMetadata{
		KeyId: k.id, Arn: k.arn, AWSAccountId: s.Account, KeyUsage: "SIGN_VERIFY", KeySpec: spec,
		CustomerMasterKeySpec: spec, KeyState: "Enabled", Origin: "AWS_KMS", KeyManager: "CUSTOMER",
		CreationDate: float64(k.created.Unix()), Enabled: true, SigningAlgorithms: algorithms(spec),
	}}, nil
}

func (s *Server) getPublicKey(ref string) (any, *apiError) {
	k := s.lookup(ref)
	if k == nil {
		return nil, errorf(400, "NotFoundException", "Key '%s' does not exist", ref)
	}
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		return nil, errorf(500, "KMSInternalException", "%v", err)
	}
	return map[string]any{
		"KeyId": k.arn, "PublicKey": der, "KeySpec": k.spec, "CustomerMasterKeySpec": k.spec,
		"KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": algorithms(k.spec),
	}, nil
}

func (s *Server) sign(ref string, msg []byte, msgType, alg string) (any, *apiError) {
	k := s.lookup(ref)
	if k == nil {
		return nil, errorf(400, "NotFoundException", "Key '%s' does not exist", ref)
	}
	valid := false
	for _, a := range algorithms(k.spec) {
		valid = valid || a == alg
	}
	if !valid {
		return nil, errorf(400, "InvalidKeyUsageException", "signing algorithm %s is not valid for key spec %s", alg, k.spec)
	}
	var h crypto.Hash
	switch {
	case strings.HasSuffix(alg, "_256"):
		h = crypto.SHA256
	case strings.HasSuffix(alg, "_384"):
		h = crypto.SHA384
	default:
		h = crypto.SHA512
	}
	digest := msg
	switch msgType {
	case "DIGEST":
		if len(msg) != h.Size() {
			return nil, errorf(400, "ValidationException", "Digest is invalid length for algorithm %s.", alg)
		}
	case "RAW", "":
		switch h {
		case crypto.SHA256:
			d := sha256.Sum256(msg)
			digest = d[:]
		case crypto.SHA384:
			d := sha512.Sum384(msg)
			digest = d[:]
		default:
			d := sha512.Sum512(msg)
			digest = d[:]
		}
	default:
		return nil, errorf(400, "ValidationException", "MessageType %q is not supported", msgType)
	}
	var opts crypto.SignerOpts = h
	if strings.HasPrefix(alg, "RSASSA_PSS_") {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}
	}
	sig, err := k.priv.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, errorf(500, "KMSInternalException", "%v", err)
	}
	if s.Corrupt() {
		sig = kmsfake.CorruptBytes(sig)
	}
	s.signs.Add(1)
	return map[string]any{"KeyId": k.arn, "Signature": sig, "SigningAlgorithm": alg}, nil
}
