package ca

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tier0-ca/tier0/internal/redact"
)

// ErrInvalidSelector: a workload selector that is not one of the forms
// Selector documents. Maps to InvalidArgument.
var ErrInvalidSelector = errors.New("invalid selector")

// Selector limits: per registration entry, and bytes per selector.
const (
	MaxSelectors     = 16
	MaxSelectorBytes = 1024
)

// Selector is one workload attribute an entry requires, written
// "unix:uid:N", "unix:gid:N" or "unix:path:/abs/path". An agent attests a
// workload by its Unix peer credentials and serves it the entries whose
// selectors all match.
type Selector struct {
	Kind  string // "uid", "gid" or "path"
	Value string // decimal id, or a clean absolute path
}

func (s Selector) String() string { return "unix:" + s.Kind + ":" + s.Value }

// ParseSelector parses and validates one selector.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorBytes {
		return Selector{}, fmt.Errorf("ca: selector of %d bytes exceeds the limit of %d bytes: %w", len(s), MaxSelectorBytes, ErrInvalidSelector)
	}
	q := redact.Quote(s)
	typ, rest, ok := strings.Cut(s, ":")
	if !ok || typ != "unix" {
		return Selector{}, fmt.Errorf("ca: selector %s: want unix:uid:N, unix:gid:N or unix:path:/abs/path: %w", q, ErrInvalidSelector)
	}
	kind, value, _ := strings.Cut(rest, ":")
	switch kind {
	case "uid", "gid":
		if _, err := strconv.ParseUint(value, 10, 32); err != nil || strings.HasPrefix(value, "+") || (len(value) > 1 && value[0] == '0') {
			return Selector{}, fmt.Errorf("ca: selector %s: %s must be a decimal number below 2^32: %w", q, kind, ErrInvalidSelector)
		}
	case "path":
		if !path.IsAbs(value) || path.Clean(value) != value || strings.ContainsRune(value, 0) {
			return Selector{}, fmt.Errorf("ca: selector %s: path must be absolute and clean: %w", q, ErrInvalidSelector)
		}
	default:
		return Selector{}, fmt.Errorf("ca: selector %s: unknown unix selector %s (want uid, gid or path): %w", q, redact.Quote(kind), ErrInvalidSelector)
	}
	return Selector{Kind: kind, Value: value}, nil
}

// NormalizeSelectors validates ss and returns them sorted without
// duplicates.
func NormalizeSelectors(ss []string) ([]string, error) {
	if len(ss) > MaxSelectors {
		return nil, fmt.Errorf("ca: %d selectors, at most %d: %w", len(ss), MaxSelectors, ErrInvalidSelector)
	}
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		sel, err := ParseSelector(s)
		if err != nil {
			return nil, err
		}
		out = append(out, sel.String())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Workload is what an agent knows of a workload process.
type Workload struct {
	UID, GID uint32
	Path     string // the binary, from /proc/PID/exe; "" when unknown
}

// Matches reports whether w satisfies every selector. An empty list never
// matches: an entry without selectors is not for workloads.
func (w Workload) Matches(selectors []string) bool {
	if len(selectors) == 0 {
		return false
	}
	for _, s := range selectors {
		sel, err := ParseSelector(s)
		if err != nil {
			return false
		}
		var ok bool
		switch sel.Kind {
		case "uid":
			ok = sel.Value == strconv.FormatUint(uint64(w.UID), 10)
		case "gid":
			ok = sel.Value == strconv.FormatUint(uint64(w.GID), 10)
		case "path":
			ok = w.Path != "" && sel.Value == w.Path
		}
		if !ok {
			return false
		}
	}
	return true
}
