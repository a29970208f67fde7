// Package core holds the types shared by the storage package and its
// backends (storage/sqlite, storage/postgres). It exists only to break the
// import cycle between storage.Open and the backends; storage re-exports
// everything here, and code outside storage/ should use those names.
package core

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/internal/redact"
	"github.com/tier0-ca/tier0/storage/serial"
)

// Record kinds (the kind column, migrations 0006 and 0008).
const (
	KindX509  = record.KindX509  // an X.509 certificate
	KindJWT   = record.KindJWT   // a JWT-SVID: issuer_key_id "jwt:<kid>", serial its jti
	KindAdmin = record.KindAdmin // an admin event (event_action set)
)

// KindOf returns the kind of a record with this issuer_key_id (what the
// kind column computes).
func KindOf(issuerKeyID string) string {
	if strings.HasPrefix(issuerKeyID, "jwt:") {
		return KindJWT
	}
	return KindX509
}

// Sentinel errors, re-exported by package storage.
var (
	ErrGap          = errors.New("storage: sequence gap")
	ErrConflict     = errors.New("storage: conflicting record")
	ErrBadFilter    = errors.New("storage: bad filter")
	ErrSchemaTooNew = errors.New("storage: schema is newer than this binary")
	ErrUnavailable  = errors.New("storage: record store unavailable")
)

// Query limits.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// Time bounds accepted in a Filter: outside them the encodings of both
// backends (unix microseconds, timestamptz) lose meaning.
var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
)

// Filter selects records for Query. Zero fields do not filter. Since and
// Until apply to NotBefore: Since <= not_before < Until.
type Filter struct {
	SPIFFEID    string
	AgentID     string
	Serial      string // any spelling storage/serial.Parse accepts (hex in any case, leading zeros, colons, dec:); matched canonically
	Kind        string // "" (all), KindX509, KindJWT or KindAdmin
	IssuerKeyID string // hex, any case
	Since       time.Time
	Until       time.Time
	// CommittedSince and CommittedUntil apply to the commit time:
	// CommittedSince <= committed_at < CommittedUntil.
	CommittedSince time.Time
	CommittedUntil time.Time
	Limit          int    // 0 means DefaultLimit; at most MaxLimit
	BeforeSeq      uint64 // only seq < BeforeSeq (paging newest first); 0: no bound
}

// Validate reports a malformed filter as an error wrapping ErrBadFilter.
func (f Filter) Validate() error {
	if f.Limit < 0 {
		return fmt.Errorf("%w: limit %d is negative", ErrBadFilter, f.Limit)
	}
	if f.Limit > MaxLimit {
		return fmt.Errorf("%w: limit %d is above the maximum %d", ErrBadFilter, f.Limit, MaxLimit)
	}
	if err := checkID("spiffe_id", f.SPIFFEID); err != nil {
		return err
	}
	if err := checkID("agent_id", f.AgentID); err != nil {
		return err
	}
	if f.Serial != "" {
		if _, err := serial.Parse(f.Serial); err != nil {
			return fmt.Errorf("%w: %w", ErrBadFilter, err)
		}
	}
	if f.Kind != "" && f.Kind != KindX509 && f.Kind != KindJWT && f.Kind != KindAdmin {
		return fmt.Errorf("%w: kind %s is not %s, %s or %s", ErrBadFilter, redact.Quote(f.Kind), KindX509, KindJWT, KindAdmin)
	}
	if err := checkHex("issuer_key_id", f.IssuerKeyID); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		t    time.Time
	}{{"since", f.Since}, {"until", f.Until}, {"committed_since", f.CommittedSince}, {"committed_until", f.CommittedUntil}} {
		if !c.t.IsZero() && (c.t.Before(minTime) || c.t.After(maxTime)) {
			return fmt.Errorf("%w: %s %s is outside years 1-9999", ErrBadFilter, c.name, c.t.Format(time.RFC3339))
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return fmt.Errorf("%w: until %s is before since %s", ErrBadFilter,
			f.Until.Format(time.RFC3339Nano), f.Since.Format(time.RFC3339Nano))
	}
	return nil
}

// Normalize validates f and returns it with the default limit filled in,
// hex fields lowercased and times in UTC, ready for a backend to query.
func Normalize(f Filter) (Filter, error) {
	if err := f.Validate(); err != nil {
		return f, err
	}
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	if f.Serial != "" {
		f.Serial, _ = serial.Canonical(f.Serial) // validated above
	}
	f.IssuerKeyID = strings.ToLower(f.IssuerKeyID)
	if !f.Since.IsZero() {
		f.Since = f.Since.UTC()
	}
	if !f.Until.IsZero() {
		f.Until = f.Until.UTC()
	}
	if !f.CommittedSince.IsZero() {
		f.CommittedSince = f.CommittedSince.UTC()
	}
	if !f.CommittedUntil.IsZero() {
		f.CommittedUntil = f.CommittedUntil.UTC()
	}
	return f, nil
}

func checkID(name, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > ca.MaxIDBytes { // the one length rule for SPIFFE IDs
		return fmt.Errorf("%w: %s is %d bytes, above the limit of %d bytes", ErrBadFilter, name, len(v), ca.MaxIDBytes)
	}
	if _, err := spiffeid.FromString(v); err != nil {
		return fmt.Errorf("%w: %s %s is not a SPIFFE ID: %w", ErrBadFilter, name, redact.Quote(v), err)
	}
	return nil
}

func checkHex(name, v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 128 {
		return fmt.Errorf("%w: %s is %d characters long (at most 128)", ErrBadFilter, name, len(v))
	}
	for _, c := range v {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return fmt.Errorf("%w: %s %s is not hex", ErrBadFilter, name, redact.Quote(v))
		}
	}
	return nil
}

// Migration is one numbered .sql file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// LoadMigrations reads NNNN_name.sql files from dir in fsys, sorted by
// version. Versions must be 1, 2, 3, ... without gaps.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("storage: read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("storage: migration %q: name must be NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("storage: read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("storage: migration %q: expected version %d", m.Name, i+1)
		}
	}
	return ms, nil
}

// TooNew returns the error for a database whose schema version is newer
// than the newest migration this binary embeds.
func TooNew(prefix string, dbVersion, known int) error {
	return fmt.Errorf("%s: database schema version %d is newer than this binary knows (%d); upgrade tier0: %w",
		prefix, dbVersion, known, ErrSchemaTooNew)
}
