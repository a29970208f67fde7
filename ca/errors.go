package ca

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (or, for journal failures, the journal's own error), so api/ can map
// them to status codes with errors.Is.
var (
	// ErrInvalidCSR: malformed or oversized CSR, bad CSR signature, wrong URI
	// SAN count, DNS/IP/email SANs present. Maps to InvalidArgument.
	ErrInvalidCSR = errors.New("invalid csr")
	// ErrInvalidID: non-SPIFFE URI, foreign trust domain, reserved path.
	// Maps to InvalidArgument.
	ErrInvalidID = errors.New("invalid spiffe id")
	// ErrInvalidTTL: requested TTL outside [MinTTL, MaxTTL]; the message names
	// the bounds. Maps to InvalidArgument.
	ErrInvalidTTL = errors.New("invalid ttl")
	// ErrWeakKey: the CSR key is not ECDSA P-256 or RSA 2048..8192 bits.
	// Maps to InvalidArgument.
	ErrWeakKey = errors.New("weak or unsupported key")
	// ErrPermissionDenied: no registration entry grants the ID to the caller.
	// Maps to PermissionDenied.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrBatchTooLarge: more requests than Config.MaxBatch. Maps to
	// InvalidArgument.
	ErrBatchTooLarge = errors.New("batch too large")
	// ErrIssuer: our own fault (signer failure, issuer expiring, a produced
	// certificate that fails validation). Maps to Internal.
	ErrIssuer = errors.New("issuer error")
)
