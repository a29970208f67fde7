// Package gcpfake is a local Cloud KMS endpoint: a real gRPC server for
// google.cloud.kms.v1.KeyManagementService implementing CreateKeyRing,
// CreateCryptoKey (which creates version 1), GetPublicKey (with pem_crc32c)
// and AsymmetricSign (checking digest_crc32c, returning signature_crc32c and
// verified_digest_crc32c), with in-memory EC P-256/P-384 and RSA-2048 keys
// and the fault knobs of kmsfake. No auth, no TLS. For tests and
// `tier0 dev kms-gcp` only.
package gcpfake

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tier0-ca/tier0/signer/kmsfake"
)

// Server is the fake KMS. Its embedded Faults are the fault knobs.
type Server struct {
	kmspb.UnimplementedKeyManagementServiceServer
	kmsfake.Faults

	mu       sync.Mutex
	keyRings map[string]*kmspb.KeyRing
	keys     map[string]*kmspb.CryptoKey
	versions map[string]*version // by version name
	grpc     *grpc.Server
	signs    atomic.Int64
}

type version struct {
	priv crypto.Signer
	alg  kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm
	hash crypto.Hash
	pss  bool
}

// New returns an empty fake.
func New() *Server {
	return &Server{keyRings: map[string]*kmspb.KeyRing{}, keys: map[string]*kmspb.CryptoKey{}, versions: map[string]*version{}}
}

// Serve serves gRPC on lis until Stop. Serve again (on a new listener,
// e.g. on the same port) after Stop to bring the endpoint back with the
// same keys.
func (s *Server) Serve(lis net.Listener) error {
	g := grpc.NewServer()
	kmspb.RegisterKeyManagementServiceServer(g, s)
	s.mu.Lock()
	s.grpc = g
	s.mu.Unlock()
	return g.Serve(lis)
}

// Stop stops serving and closes open connections.
func (s *Server) Stop() {
	s.mu.Lock()
	g := s.grpc
	s.mu.Unlock()
	if g != nil {
		g.Stop()
	}
}

// Start serves on addr in the background (port 0: any) and returns the
// address; after Stop, Start on the same address brings the endpoint back.
func (s *Server) Start(addr string) (string, error) { return kmsfake.Start(addr, s.Serve) }

// Signs is the number of successful AsymmetricSign calls.
func (s *Server) Signs() int64 { return s.signs.Load() }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc(b []byte) int64 { return int64(crc32.Checksum(b, castagnoli)) }

// CreateKey creates keyRing and cryptoKey as needed (name is
// projects/P/locations/L/keyRings/R/cryptoKeys/K) with an
// ASYMMETRIC_SIGN version 1 of alg, and returns the version's name.
func (s *Server) CreateKey(name string, alg kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm) (string, error) {
	ring, id, ok := strings.Cut(name, "/cryptoKeys/")
	if !ok {
		return "", fmt.Errorf("gcpfake: %q is not a cryptoKey name", name)
	}
	parent, ringID, _ := strings.Cut(ring, "/keyRings/")
	if _, err := s.CreateKeyRing(context.Background(), &kmspb.CreateKeyRingRequest{Parent: parent, KeyRingId: ringID}); err != nil && status.Code(err) != codes.AlreadyExists {
		return "", err
	}
	_, err := s.CreateCryptoKey(context.Background(), &kmspb.CreateCryptoKeyRequest{
		Parent: ring, CryptoKeyId: id,
		CryptoKey: &kmspb.CryptoKey{Purpose: kmspb.CryptoKey_ASYMMETRIC_SIGN, VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg}},
	})
	if err != nil {
		return "", err
	}
	return name + "/cryptoKeyVersions/1", nil
}

// CreateKeyRing implements the RPC.
func (s *Server) CreateKeyRing(ctx context.Context, req *kmspb.CreateKeyRingRequest) (*kmspb.KeyRing, error) {
	if !validParent(req.GetParent(), "projects", "locations") || req.GetKeyRingId() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "bad parent %q or key_ring_id %q", req.GetParent(), req.GetKeyRingId())
	}
	name := req.GetParent() + "/keyRings/" + req.GetKeyRingId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keyRings[name]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "KeyRing %s already exists", name)
	}
	kr := &kmspb.KeyRing{Name: name, CreateTime: timestamppb.Now()}
	s.keyRings[name] = kr
	return kr, nil
}

func validParent(p string, kinds ...string) bool {
	parts := strings.Split(p, "/")
	if len(parts) != 2*len(kinds) {
		return false
	}
	for i, k := range kinds {
		if parts[2*i] != k || parts[2*i+1] == "" {
			return false
		}
	}
	return true
}

// CreateCryptoKey implements the RPC for ASYMMETRIC_SIGN keys; it creates
// version 1 unless skip_initial_version_creation.
func (s *Server) CreateCryptoKey(ctx context.Context, req *kmspb.CreateCryptoKeyRequest) (*kmspb.CryptoKey, error) {
	ck := req.GetCryptoKey()
	if ck.GetPurpose() != kmspb.CryptoKey_ASYMMETRIC_SIGN {
		return nil, status.Errorf(codes.InvalidArgument, "gcpfake supports only ASYMMETRIC_SIGN keys, not %s", ck.GetPurpose())
	}
	alg := ck.GetVersionTemplate().GetAlgorithm()
	v := &version{alg: alg, hash: crypto.SHA256}
	var err error
	switch alg {
	case kmspb.CryptoKeyVersion_EC_SIGN_P256_SHA256:
		v.priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case kmspb.CryptoKeyVersion_EC_SIGN_P384_SHA384:
		v.hash = crypto.SHA384
		v.priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case kmspb.CryptoKeyVersion_RSA_SIGN_PKCS1_2048_SHA256:
		v.priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case kmspb.CryptoKeyVersion_RSA_SIGN_PSS_2048_SHA256:
		v.pss = true
		v.priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, status.Errorf(codes.InvalidArgument, "gcpfake does not support algorithm %s", alg)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "generate key: %v", err)
	}
	name := req.GetParent() + "/cryptoKeys/" + req.GetCryptoKeyId()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.keyRings[req.GetParent()]; !ok {
		return nil, status.Errorf(codes.NotFound, "KeyRing %s not found", req.GetParent())
	}
	if _, ok := s.keys[name]; ok || req.GetCryptoKeyId() == "" {
		return nil, status.Errorf(codes.AlreadyExists, "CryptoKey %s already exists", name)
	}
	out := &kmspb.CryptoKey{
		Name: name, Purpose: ck.GetPurpose(), CreateTime: timestamppb.Now(),
		VersionTemplate: &kmspb.CryptoKeyVersionTemplate{Algorithm: alg, ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE},
	}
	s.keys[name] = out
	if !req.GetSkipInitialVersionCreation() {
		s.versions[name+"/cryptoKeyVersions/1"] = v
	}
	return out, nil
}

func (s *Server) version(ctx context.Context, name string) (*version, error) {
	fault, err := s.Before(ctx)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	switch fault {
	case kmsfake.Throttled:
		return nil, status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Asymmetric sign requests' (injected)")
	case kmsfake.Unavailable:
		return nil, status.Error(codes.Unavailable, "The service is currently unavailable (injected)")
	}
	s.mu.Lock()
	v := s.versions[name]
	s.mu.Unlock()
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "CryptoKeyVersion %s not found", name)
	}
	return v, nil
}

// GetPublicKey implements the RPC.
func (s *Server) GetPublicKey(ctx context.Context, req *kmspb.GetPublicKeyRequest) (*kmspb.PublicKey, error) {
	v, err := s.version(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(v.priv.Public())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	p := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	return &kmspb.PublicKey{
		Pem: p, PemCrc32C: wrapperspb.Int64(crc([]byte(p))), Algorithm: v.alg,
		Name: req.GetName(), ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}

// AsymmetricSign implements the RPC.
func (s *Server) AsymmetricSign(ctx context.Context, req *kmspb.AsymmetricSignRequest) (*kmspb.AsymmetricSignResponse, error) {
	v, err := s.version(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	var digest []byte
	switch v.hash {
	case crypto.SHA256:
		digest = req.GetDigest().GetSha256()
	case crypto.SHA384:
		digest = req.GetDigest().GetSha384()
	}
	if len(digest) != v.hash.Size() {
		return nil, status.Errorf(codes.InvalidArgument, "digest must be a %v digest for algorithm %s", v.hash, v.alg)
	}
	if c := req.GetDigestCrc32C(); c != nil && c.GetValue() != crc(digest) {
		return nil, status.Error(codes.InvalidArgument, "The checksum in field digest_crc32c did not match the data in field digest.")
	}
	var opts crypto.SignerOpts = v.hash
	if v.pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: v.hash}
	}
	sig, err := v.priv.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "sign: %v", err)
	}
	if s.Corrupt() {
		sig = kmsfake.CorruptBytes(sig)
	}
	sum := crc(sig)
	if s.BadChecksum() {
		sum ^= 1
	}
	s.signs.Add(1)
	return &kmspb.AsymmetricSignResponse{
		Signature: sig, SignatureCrc32C: wrapperspb.Int64(sum),
		VerifiedDigestCrc32C: req.GetDigestCrc32C() != nil, Name: req.GetName(),
		ProtectionLevel: kmspb.ProtectionLevel_SOFTWARE,
	}, nil
}
