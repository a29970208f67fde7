// Package signer opens the CA's signing key from a URI and returns a
// crypto.Signer that tier0's ca package uses to sign certificates (directly,
// or to sign the delegated intermediate in delegated mode).
//
//	s, err := signer.Open(ctx, uri, signer.Options{Registerer: reg, Logger: log})
//	if err != nil { ... }
//	defer s.Close()
//	latency, err := signer.SelfTest(ctx, s) // sign + verify a random digest
//
// The public key is read once at Open: Public never does I/O. Sign applies
// Options.Timeout; SignContext also honours the caller's context.
// SelfTest, Probe and Bench sign digests of HashFor(s.Public()), the hash
// crypto/x509 uses with the key (SHA-384 for P-384, SHA-256 for P-256 and
// RSA), so a key that passes them can sign the CA's certificates.
//
// # Key URIs
//
// PKCS#11 (HSM; RFC 7512):
//
//		pkcs11:token=tier0;object=ca-key;id=%01?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/tier0/hsm-pin
//
//	  - Path attributes: token (label), serial, slot-id select the token;
//	    object (CKA_LABEL) and/or id (CKA_ID, percent-encoded bytes) select the
//	    key; type, if given, must be "private". Unknown attributes are errors.
//	  - Query attributes: module-path (required), pin-source (required):
//	    file:/path (or /path; trailing newline ignored; the file must have
//	    mode 0600 or 0400, anything else is refused naming the file and its
//	    mode) or env:VAR. pin-value is rejected: PINs never go in URIs. The
//	    PIN is never logged or put in an error.
//	  - EC P-256/P-384 (CKM_ECDSA, converted to ASN.1 DER) and RSA >= 2048
//	    (CKM_RSA_PKCS with DigestInfo for SHA-256/384/512; CKM_RSA_PKCS_PSS
//	    when opts is *rsa.PSSOptions). The EC public key is read from the
//	    public key object with the same label/id.
//	  - A pool of Options.Sessions sessions (default 4), one login per token,
//	    the key handle cached. A session the token dropped (closed, logged
//	    out) is re-opened, logged in and the sign retried once.
//	  - Device faults (CKR_GENERAL_ERROR, CKR_DEVICE_ERROR,
//	    CKR_DEVICE_REMOVED, CKR_DEVICE_MEMORY, CKR_TOKEN_NOT_PRESENT,
//	    CKR_TOKEN_NOT_RECOGNIZED, CKR_SLOT_ID_INVALID,
//	    CKR_CRYPTOKI_NOT_INITIALIZED, CKR_FUNCTION_FAILED, CKR_SESSION_COUNT,
//	    and session errors that survive re-opening the session) fail the sign
//	    with an *UnavailableError and count against the circuit breaker (see
//	    Health); its recovery probe re-initialises the module (C_Finalize,
//	    C_Initialize: some modules, tpm2-pkcs11 for one, keep failing until
//	    then), finds the token's slot again, re-opens the sessions, logs in,
//	    finds the key, re-makes its session copy and signs a test digest.
//	    Signers sharing the module re-open their sessions on next use.
//	  - x-session-copy (query, default true): sign with a session-object copy
//	    of the key (C_CopyObject, CKA_TOKEN=false), made once in the token;
//	    a module that refuses the copy is used with the token object. It
//	    avoids per-signature token-store work (SoftHSM2: ~30% more
//	    signatures/s).
//	    x-session-copy=false signs with the token object.
//
// AWS KMS (asymmetric key, KeyUsage SIGN_VERIFY):
//
//		awskms:///arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
//		awskms:///alias/tier0-ca?region=us-east-1
//		awskms:///alias/tier0-ca?region=us-east-1&endpoint=http://127.0.0.1:4599   (tier0 dev kms-aws)
//
//	  - Query: region (default: from the ARN, else the SDK chain), endpoint
//	    (https; http only to loopback), profile. Credentials come from the
//	    standard AWS chain (env, shared config, IMDS, ...).
//	  - ECC_NIST_P256/P384 and RSA_2048/3072/4096; Sign uses MessageType
//	    DIGEST and ECDSA_SHA_*, RSASSA_PKCS1_V1_5_SHA_* or RSASSA_PSS_SHA_*.
//
// Google Cloud KMS (key version of purpose ASYMMETRIC_SIGN):
//
//		gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/1
//		gcpkms:projects/P/locations/L/keyRings/R/cryptoKeys/K/cryptoKeyVersions/1?endpoint=127.0.0.1:4600&insecure=1   (tier0 dev kms-gcp)
//
//	  - Query: endpoint (host:port), insecure=1 (plaintext and no auth; only
//	    for loopback endpoints). Otherwise Application Default Credentials.
//	  - EC_SIGN_P256_SHA256, EC_SIGN_P384_SHA384, RSA_SIGN_PKCS1_*,
//	    RSA_SIGN_PSS_*. The padding is fixed by the key's algorithm. Every
//	    response is CRC32C-checked; a mismatch is retried and then fails with
//	    ErrChecksum.
//
// Soft key (development and tests only; the key is on disk):
//
//		soft:/var/lib/tier0/dev-ca.pem
//
//	  - PKCS#8 PEM ("PRIVATE KEY"), ECDSA or RSA; the file must be 0600 or
//	    stricter. soft.Generate writes a new P-256 key.
//
// # KMS throughput control
//
// awskms and gcpkms share: a client-side rate limit (Options.RateLimit,
// default DefaultAWSRateLimit = 500/s, half the AWS ECC Sign quota of
// 1,000/s per account and region, and DefaultGCPRateLimit = 250/s; set it to
// your quota divided by the number of nodes); up to Options.MaxRetries
// (default 4) retries with full-jitter exponential backoff (25ms base, 1s
// cap) on throttling (ErrThrottled when exhausted), 5xx/unavailable/transport
// errors (ErrKMS) and checksum mismatches (ErrChecksum); Options.Timeout
// (default 5s) over the whole call (ErrTimeout); and the circuit breaker
// below, where every unavailable attempt counts. The Cloud KMS channel
// reconnects to a lost endpoint with at most 1s of backoff (gRPC's default
// grows to 120s) and its recovery probe waits for the channel to be ready
// (up to its deadline) instead of failing on a channel between attempts:
// an endpoint that comes back is signing again within about a second.
//
// # Health, circuit breaker and errors
//
// Every Signer reports Health(): Up, Degraded (signing, but recent
// failures or throttling) or Down, since when, the last availability error
// and, while Down, when the next recovery probe runs. pkcs11, awskms and
// gcpkms share a circuit breaker: 5 consecutive availability failures open
// it; while open every sign fails at once, and a background probe (a real
// signature, repairing sessions, module or connection first) runs every
// 250ms, doubling up to 2s, until it succeeds and closes the breaker. No
// traffic is needed to recover. soft is always Up.
//
// A sign that fails because the key cannot sign now (breaker open, HSM
// device fault, KMS unavailable, throttled or timed out) returns an
// *UnavailableError: it wraps ErrUnavailable and the cause (so errors.Is
// with ErrThrottled, ErrKMS, ErrTimeout, ErrDevice still works), says when
// to retry (RetryAfter: the time to the next probe while open, the backoff
// when throttled), and has two texts: Error() with the full cause for logs
// (key ARNs, endpoints, PKCS#11 codes) and Public() for clients (backend,
// reason and retry hint only). Endpoints with user:password@ are refused
// and never echoed.
//
// Logs are rate-limited: one line when the breaker opens (with the cause),
// one every 30s while it stays open (refused calls, failed probes), one
// when it closes, and likewise for throttling; never one per sign.
//
// Probe(ctx, s) is the periodic health check of a key that signs rarely
// (a delegated-mode root): it signs and verifies one digest, so a dead HSM
// or KMS shows in Health, the metrics and the logs before the next
// intermediate rotation needs the key.
//
// # Metrics (Options.Registerer; every series exists from Open, at zero)
//
//	tier0_signer_sign_seconds{backend}       histogram, retries included
//	tier0_signer_errors_total{backend,kind}  kind: throttled, circuit_open, timeout, checksum, unavailable, closed, canceled, other
//	tier0_signer_retries_total{backend}      KMS attempts retried
//	tier0_signer_circuit_open{backend,key}   1 while the breaker is open
//	tier0_signer_up{backend,key}             1 while the key can sign (Up or Degraded), 0 while Down
//
// Local wire-compatible KMS endpoints for tests and `tier0 dev` live in
// signer/kmsfake/awsfake and signer/kmsfake/gcpfake; the conformance suite
// every backend passes is signer/signertest.
package signer
