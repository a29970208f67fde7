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
// TYPE:KIND:VALUE. An agent attests a workload and serves it the entries
// whose selectors all match. Two types exist:
//
//   - unix (the caller's Unix peer credentials): "unix:uid:N", "unix:gid:N",
//     "unix:path:/abs/path";
//   - k8s (the caller's pod, from its cgroup and the kubelet; SPIRE's names):
//     "k8s:ns:NS", "k8s:sa:SA", "k8s:node-name:N", "k8s:pod-name:P",
//     "k8s:pod-uid:U", "k8s:pod-label:KEY:VALUE", "k8s:pod-owner:KIND:NAME",
//     "k8s:pod-owner-uid:KIND:UID", "k8s:container-name:C",
//     "k8s:container-image:IMG", "k8s:pod-image:IMG", "k8s:pod-init-image:IMG".
type Selector struct {
	Type  string // "unix" or "k8s"
	Kind  string // e.g. "uid", "path", "ns", "pod-label"
	Value string // the rest, after the second colon
}

func (s Selector) String() string { return s.Type + ":" + s.Kind + ":" + s.Value }

// k8sKinds are the Kubernetes selector kinds; true when the value is
// KEY:VALUE (the key non-empty, the value may be).
var k8sKinds = map[string]bool{
	"ns": false, "sa": false, "node-name": false, "pod-name": false, "pod-uid": false,
	"pod-label": true, "pod-owner": true, "pod-owner-uid": true,
	"container-name": false, "container-image": false, "pod-image": false, "pod-init-image": false,
}

const selectorForms = "unix:uid:N, unix:gid:N, unix:path:/abs/path or k8s:KIND:VALUE"

// ParseSelector parses and validates one selector.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorBytes {
		return Selector{}, fmt.Errorf("ca: selector of %d bytes exceeds the limit of %d bytes: %w", len(s), MaxSelectorBytes, ErrInvalidSelector)
	}
	q := redact.Quote(s)
	typ, rest, _ := strings.Cut(s, ":")
	kind, value, _ := strings.Cut(rest, ":")
	switch typ {
	case "unix":
		if err := checkUnix(kind, value); err != nil {
			return Selector{}, fmt.Errorf("ca: selector %s: %s: %w", q, err, ErrInvalidSelector)
		}
	case "k8s":
		if err := checkK8s(kind, value); err != nil {
			return Selector{}, fmt.Errorf("ca: selector %s: %s: %w", q, err, ErrInvalidSelector)
		}
	default:
		return Selector{}, fmt.Errorf("ca: selector %s: want %s: %w", q, selectorForms, ErrInvalidSelector)
	}
	return Selector{Type: typ, Kind: kind, Value: value}, nil
}

func checkUnix(kind, value string) error {
	switch kind {
	case "uid", "gid":
		if _, err := strconv.ParseUint(value, 10, 32); err != nil || strings.HasPrefix(value, "+") || (len(value) > 1 && value[0] == '0') {
			return fmt.Errorf("%s must be a decimal number below 2^32", kind)
		}
	case "path":
		if !path.IsAbs(value) || path.Clean(value) != value || strings.ContainsRune(value, 0) {
			return errors.New("path must be absolute and clean")
		}
	default:
		return fmt.Errorf("unknown unix selector %s (want uid, gid or path)", redact.Quote(kind))
	}
	return nil
}

func checkK8s(kind, value string) error {
	pair, ok := k8sKinds[kind]
	switch {
	case !ok:
		return fmt.Errorf("unknown k8s selector %s (want ns, sa, node-name, pod-name, pod-uid, pod-label, pod-owner, pod-owner-uid, container-name, container-image, pod-image or pod-init-image)", redact.Quote(kind))
	case strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return errors.New("value has a control character")
	case value == "":
		return fmt.Errorf("k8s:%s needs a value", kind)
	case pair && (!strings.Contains(value, ":") || strings.HasPrefix(value, ":")):
		return fmt.Errorf("k8s:%s takes KEY:VALUE", kind)
	}
	return nil
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
	// Attested are the selectors of other attestors (k8s:...), each an
	// exact string as ParseSelector accepts it; a selector of those types
	// matches only when it is in this list.
	Attested []string
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
		switch sel.Type + ":" + sel.Kind {
		case "unix:uid":
			ok = sel.Value == strconv.FormatUint(uint64(w.UID), 10)
		case "unix:gid":
			ok = sel.Value == strconv.FormatUint(uint64(w.GID), 10)
		case "unix:path":
			ok = w.Path != "" && sel.Value == w.Path
		default:
			ok = slices.Contains(w.Attested, s)
		}
		if !ok {
			return false
		}
	}
	return true
}
