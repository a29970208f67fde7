// Package nodeattest verifies node attestation evidence (issue 17): the
// proof a tier0 agent presents at bootstrap instead of a join token. Each
// Attestor checks one kind of platform evidence (a host certificate, a
// Kubernetes projected service-account token, a GCE instance identity
// token, an EC2 instance identity document) against trust anchors the
// operator configured, and yields the agent's name and selectors.
//
// The package only verifies; it keeps no state. Replay protection is the
// caller's: a Result names the ReplayKeys of the evidence it accepted,
// which the API records in the replicated state (ha.RecordAttestation)
// before it issues anything, refusing keys already used.
package nodeattest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"
)

// MaxEvidence bounds the evidence an agent may send (bytes).
const MaxEvidence = 64 << 10

// Errors. A verification that fails wraps ErrDenied (PermissionDenied):
// a bad signature, an untrusted issuer, expired evidence, a project,
// account, region or cluster not allowed. Evidence that cannot be parsed
// at all wraps ErrBadEvidence (InvalidArgument). Anything else is ours.
var (
	ErrDenied      = errors.New("nodeattest: attestation denied")
	ErrBadEvidence = errors.New("nodeattest: malformed evidence")
)

// ReplayKey names one use of evidence: Key may not be used again until
// Until (the API keeps none longer than ha.MaxReplayWindow).
type ReplayKey struct {
	Key   string
	Until time.Time
}

// Result is a successful attestation.
type Result struct {
	AgentName string   // the NAME in spiffe://TD/tier0/agent/NAME
	Selectors []string // sorted, "attestor:kind:value"
	Replay    []ReplayKey
	Detail    string // one line for the decision log (what was verified), no secrets
}

// ChallengeFunc sends challenge to the agent and returns its response
// (x509pop's proof of possession); attestors that need none ignore it.
type ChallengeFunc func(ctx context.Context, challenge []byte) ([]byte, error)

// Attestor verifies one kind of evidence.
type Attestor interface {
	Name() string
	Attest(ctx context.Context, evidence []byte, challenge ChallengeFunc) (Result, error)
}

// Attestor names.
const (
	X509PoP = "x509pop"
	K8sPSAT = "k8s_psat"
	GCPIIT  = "gcp_iit"
	AWSIID  = "aws_iid"
)

// Names lists the attestors this package implements.
var Names = []string{AWSIID, GCPIIT, K8sPSAT, X509PoP}

// Config enables attestors: each is configured by its YAML section
// (`tier0 server --attestor-NAME` or that key of the config file); an
// attestor without one is disabled.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Sections    map[string]string // attestor name -> YAML
	Clock       func() time.Time  // default time.Now
}

// Registry holds the enabled attestors.
type Registry struct {
	m map[string]Attestor
}

// New builds the enabled attestors; a section that does not parse or
// whose trust anchors cannot be loaded is an error naming the attestor.
func New(cfg Config) (*Registry, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	r := &Registry{m: map[string]Attestor{}}
	for name, text := range cfg.Sections {
		if strings.TrimSpace(text) == "" {
			continue
		}
		var a Attestor
		var err error
		switch name {
		case X509PoP:
			a, err = newX509PoP(cfg, text)
		case K8sPSAT:
			a, err = newK8sPSAT(cfg, text)
		case GCPIIT:
			a, err = newGCPIIT(cfg, text)
		case AWSIID:
			a, err = newAWSIID(cfg, text)
		default:
			return nil, fmt.Errorf("nodeattest: unknown attestor %q (want one of %s)", name, strings.Join(Names, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("nodeattest: %s: %w", name, err)
		}
		r.m[name] = a
	}
	return r, nil
}

// Get returns the enabled attestor name.
func (r *Registry) Get(name string) (Attestor, bool) {
	if r == nil {
		return nil, false
	}
	a, ok := r.m[name]
	return a, ok
}

// Enabled lists the enabled attestors, sorted.
func (r *Registry) Enabled() []string {
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// decodeSection parses a YAML section strictly (unknown keys refused).
func decodeSection(text string, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(text))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// denied wraps ErrDenied with a reason.
func denied(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrDenied, fmt.Sprintf(format, a...))
}

// bad wraps ErrBadEvidence with a reason.
func bad(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrBadEvidence, fmt.Sprintf(format, a...))
}

// hashKey is a replay key for a whole piece of evidence (a token).
func hashKey(attestor string, evidence []byte) string {
	h := sha256.Sum256(evidence)
	return attestor + ":evidence:" + hex.EncodeToString(h[:])
}

// nameTemplate is an agent-name template (text/template).
type nameTemplate struct{ t *template.Template }

func parseNameTemplate(text, def string) (nameTemplate, error) {
	if text == "" {
		text = def
	}
	t, err := template.New("agent_name").Option("missingkey=error").Parse(text)
	if err != nil {
		return nameTemplate{}, fmt.Errorf("agent_name: %w", err)
	}
	return nameTemplate{t: t}, nil
}

// name executes the template and checks the result is one SPIFFE path
// segment (letters, digits, '.', '-', '_').
func (n nameTemplate) name(data any) (string, error) {
	var b bytes.Buffer
	if err := n.t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("nodeattest: agent name template: %w", err)
	}
	s := b.String()
	if err := validName(s); err != nil {
		return "", denied("agent name %q from the template: %v", s, err)
	}
	return s, nil
}

// segment makes v usable inside an agent name: characters outside
// [A-Za-z0-9._-] become '_'.
func segment(v string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, v)
}

func validName(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 255 {
		return errors.New("empty, dot or too long")
	}
	if segment(s) != s {
		return errors.New("only letters, digits, '.', '-' and '_' are allowed")
	}
	return nil
}

// sortedSelectors sorts and de-duplicates.
func sortedSelectors(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}

// allowed reports whether v is in list (an empty list allows nothing).
func allowed(list []string, v string) bool { return slices.Contains(list, v) }
