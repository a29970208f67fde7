package ca

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/tier0-ca/tier0/ca/record"
)

// Request is one SVID request: a DER CSR and a TTL (0 = the grant's TTL).
type Request struct {
	CSR     []byte
	TTL     time.Duration
	IdemKey []byte // optional idempotency key (idem.go)
}

// Result is the outcome of one Request. When Err is set (a wrapped
// sentinel, or the journal's error) only ID (when the CSR named one) and
// EntryID are set. Chain and Cert share memory with Record.CertDER and
// the issuer: treat them as read-only.
type Result struct {
	ID spiffeid.ID
	// EntryID is the entry that authorized the request; set also when
	// the request was authorized and then failed (the decision log
	// records that as a failure, not an allow), empty when it was
	// refused before or by authorization.
	EntryID string
	Chain   [][]byte // DER, leaf first, then Issuer.Chain
	Cert    *x509.Certificate
	Record  *record.Record // committed record
	Err     error
	// Replayed: Record was committed earlier for the same request (a
	// retry with the same idempotency key, idem.go), not minted now.
	Replayed bool
}

// MintBatch issues one SVID per request for caller. Each request is parsed
// and checked (ParseCSR, ValidateWorkloadID), authorized, given a TTL
// (0 -> grant TTL -> MaxTTL) within [MinTTL, MaxTTL], then built, signed and
// validated. All signed SVIDs go to one Journal.Commit; if it fails, each of
// them gets the wrapped journal error and no chain. Per-item failures leave
// no record. The returned error is non-nil only for whole-batch failures:
// ErrBatchTooLarge or a done ctx.
func (c *CA) MintBatch(ctx context.Context, caller spiffeid.ID, reqs []Request) ([]Result, error) {
	if len(reqs) > c.cfg.MaxBatch {
		return nil, fmt.Errorf("ca: batch of %d requests exceeds limit of %d: %w", len(reqs), c.cfg.MaxBatch, ErrBatchTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ca: mint batch: %w", err)
	}
	st := c.issuer.Load()
	now := c.cfg.Clock().Truncate(time.Second)
	results := make([]Result, len(reqs))
	pending := make([]*issued, len(reqs))
	recs := make([]*record.Record, 0, len(reqs))
	keys := make([]uint64, 0, len(reqs))
	owner := new(byte) // this call's claims on idempotency keys (idem.go)
	defer func() {
		for _, p := range pending {
			if p != nil && p.idem != 0 {
				c.releaseKey(p.idem, owner)
			}
		}
	}()
	for i, req := range reqs {
		if i > 0 && ctx.Err() != nil {
			return nil, fmt.Errorf("ca: mint batch: %w", ctx.Err())
		}
		iss, id, grant, err := c.mintRequest(ctx, st, now, caller, req, owner)
		if err != nil {
			c.denied(ctx, caller, id, err)
			results[i] = Result{ID: id, EntryID: grant.EntryID, Err: err}
			continue
		}
		if iss.replayed {
			results[i] = c.result(st, id, iss)
			results[i].EntryID = grant.EntryID
			continue
		}
		results[i].ID = id
		pending[i] = iss
		recs = append(recs, iss.rec)
		keys = append(keys, iss.idem)
	}
	if len(recs) == 0 {
		return results, nil
	}
	if err := c.commitFrom(ctx, st, recs, keys); err != nil { // issuerrecord.go
		for i := range results {
			if pending[i] != nil {
				results[i] = Result{ID: results[i].ID, EntryID: pending[i].grant.EntryID, Err: err}
			}
		}
		return results, nil
	}
	for i, p := range pending {
		if p != nil {
			results[i] = c.result(st, results[i].ID, p)
			results[i].EntryID = p.grant.EntryID
		}
	}
	return results, nil
}

// mintRequest handles one MintBatch item up to (not including) the
// commit. The grant is returned once the item is authorized, also with an
// error after that.
func (c *CA) mintRequest(ctx context.Context, st *issuerState, now time.Time, caller spiffeid.ID, req Request, owner *byte) (*issued, spiffeid.ID, Grant, error) {
	csr, id, err := ParseCSR(req.CSR, c.cfg.TrustDomain, c.cfg.MaxCSRBytes)
	if err != nil {
		return nil, id, Grant{}, err
	}
	if err := checkIdemKey(req.IdemKey); err != nil {
		return nil, id, Grant{}, err
	}
	if err := ValidateWorkloadID(c.cfg.TrustDomain, id); err != nil {
		return nil, id, Grant{}, err
	}
	grant, err := c.cfg.Authorizer.Authorize(caller, id)
	if err != nil {
		if errors.Is(err, ErrPermissionDenied) {
			return nil, id, Grant{}, fmt.Errorf("ca: %s may not obtain %s: %w", caller, id, err)
		}
		return nil, id, Grant{}, fmt.Errorf("ca: authorize %s for %s: %w", caller, id, err)
	}
	ttl, err := c.resolveTTL(req.TTL, grant.TTL)
	if err != nil {
		return nil, id, grant, err
	}
	key, pubHex := idemKeyFor(caller, id, csr.PublicKey, req.IdemKey)
	if iss, err := c.replayOrClaim(ctx, st, now, caller, id, key, pubHex, owner); iss != nil || err != nil {
		return iss, id, grant, err
	}
	iss, err := c.issue(st, now, caller, id, csr.PublicKey, ttl)
	if err != nil {
		c.releaseKey(key, owner)
		return nil, id, grant, err
	}
	iss.idem, iss.grant = key, grant
	if c.log.Enabled(ctx, slog.LevelDebug) {
		c.log.LogAttrs(ctx, slog.LevelDebug, "ca: svid allowed",
			slog.String("caller", caller.String()), slog.String("spiffe_id", id.String()),
			slog.String("entry_id", grant.EntryID), slog.String("serial", iss.rec.Serial))
	}
	return iss, id, grant, nil
}

// MintFor issues an SVID for id without authorization: the server uses it
// for agent, node and admin SVIDs, so reserved /tier0 paths are allowed
// here. id must be in the trust domain; the CSR's URI SAN must be empty or
// equal id. The record's AgentID is caller ("" when caller is zero). ttl 0
// means MaxTTL.
func (c *CA) MintFor(ctx context.Context, caller, id spiffeid.ID, csrDER []byte, ttl time.Duration) (Result, error) {
	return c.mintForExt(ctx, caller, id, csrDER, ttl)
}

// mintForExt is MintFor with extra (non-critical) extensions.
func (c *CA) mintForExt(ctx context.Context, caller, id spiffeid.ID, csrDER []byte, ttl time.Duration, ext ...pkix.Extension) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("ca: mint for %s: %w", id, err)
	}
	st := c.issuer.Load()
	now := c.cfg.Clock().Truncate(time.Second)
	iss, err := c.mintFor(st, now, caller, id, csrDER, ttl, ext...)
	if err != nil {
		c.denied(ctx, caller, id, err)
		return Result{}, err
	}
	if err := c.commitFrom(ctx, st, []*record.Record{iss.rec}, nil); err != nil {
		return Result{}, err
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "ca: svid allowed (internal)",
		slog.String("caller", caller.String()), slog.String("spiffe_id", id.String()), slog.String("serial", iss.rec.Serial))
	return c.result(st, id, iss), nil
}

func (c *CA) mintFor(st *issuerState, now time.Time, caller, id spiffeid.ID, csrDER []byte, ttl time.Duration, ext ...pkix.Extension) (*issued, error) {
	if err := validateMember(c.cfg.TrustDomain, id); err != nil {
		return nil, err
	}
	csr, csrID, err := parseCSR(csrDER, c.cfg.TrustDomain, c.cfg.MaxCSRBytes, true)
	if err != nil {
		return nil, err
	}
	if !csrID.IsZero() && csrID != id {
		return nil, fmt.Errorf("ca: csr URI SAN %s does not match %s: %w", csrID, id, ErrInvalidCSR)
	}
	ttl, err = c.resolveTTL(ttl, 0)
	if err != nil {
		return nil, err
	}
	return c.issue(st, now, caller, id, csr.PublicKey, ttl, ext...)
}

// logCommit logs and wraps the journal's answer err for recs.
func (c *CA) logCommit(ctx context.Context, recs []*record.Record, err error) error {
	if err != nil {
		c.commitFailed(ctx, len(recs), err)
		return fmt.Errorf("ca: commit %d issuance records: %w", len(recs), err)
	}
	return nil
}

func (c *CA) result(st *issuerState, id spiffeid.ID, iss *issued) Result {
	chain := make([][]byte, 0, 1+len(st.chainDER))
	chain = append(chain, iss.rec.CertDER)
	chain = append(chain, st.chainDER...)
	return Result{ID: id, Chain: chain, Cert: iss.cert, Record: iss.rec, Replayed: iss.replayed}
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}
