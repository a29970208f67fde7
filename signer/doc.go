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
//	    file:/path (or /path; trailing newline ignored; keep it 0600) or
//	    env:VAR. pin-value is rejected: PINs never go in URIs. The PIN is
//	    never logged or put in an error.
//	  - EC P-256/P-384 (CKM_ECDSA, converted to ASN.1 DER) and RSA >= 2048
//	    (CKM_RSA_PKCS with DigestInfo for SHA-256/384/512; CKM_RSA_PKCS_PSS
//	    when opts is *rsa.PSSOptions). The EC public key is read from the
//	    public key object with the same label/id.
//	  - A pool of Options.Sessions sessions (default 4), one login per token,
//	    the key handle cached. A session the token dropped (closed, logged
//	    out, device removed) is re-opened, logged in and the sign retried once.
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
// (default 5s) over the whole call (ErrTimeout); and a circuit breaker: 5
// consecutive unavailable attempts open it for 2s, doubling after each failed
// half-open probe up to 30s. While open, signs fail at once with ErrUnavailable
// ("signer: kms unavailable (circuit open)").
//
// # Metrics (Options.Registerer)
//
//	tier0_signer_sign_seconds{backend}       histogram, retries included
//	tier0_signer_errors_total{backend,kind}  kind: throttled, circuit_open, timeout, checksum, unavailable, closed, canceled, other
//	tier0_signer_retries_total{backend}      KMS attempts retried
//	tier0_signer_circuit_open{backend}       1 while the breaker is open
//
// Local wire-compatible KMS endpoints for tests and `tier0 dev` live in
// signer/kmsfake/awsfake and signer/kmsfake/gcpfake; the conformance suite
// every backend passes is signer/signertest.
package signer
