// Package ca is tier0's pure issuance core: it turns CSRs from identity
// agents into X.509-SVIDs.
//
// For every request it parses and checks the CSR (ParseCSR), checks the
// SPIFFE ID (ValidateWorkloadID: own trust domain, never under the reserved
// /tier0 path), asks the Authorizer whether the calling agent holds an entry
// for that ID, resolves the TTL within [MinTTL, MaxTTL], then builds,
// signs and validates the certificate. All SVIDs of a batch are recorded by
// one Journal.Commit before any chain is returned (DESIGN.md invariant 1).
//
// The package imports no Raft, database or cloud SDK: signing goes through a
// crypto.Signer, authorization and the journal through one-method
// interfaces defined here. Errors wrap the sentinels in errors.go, which
// api/ maps to status codes. See DESIGN.md in this directory for the why.
package ca
