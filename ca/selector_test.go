package ca

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{in: "unix:uid:1000"},
		{in: "unix:gid:0"},
		{in: "unix:path:/usr/bin/web"},
		{in: "unix:uid:-1", err: `ca: selector "unix:uid:-1": uid must be a decimal number below 2^32: invalid selector`},
		{in: "unix:uid:01", err: `ca: selector "unix:uid:01": uid must be a decimal number below 2^32: invalid selector`},
		{in: "unix:gid:4294967296", err: `ca: selector "unix:gid:4294967296": gid must be a decimal number below 2^32: invalid selector`},
		{in: "unix:path:bin/web", err: `ca: selector "unix:path:bin/web": path must be absolute and clean: invalid selector`},
		{in: "unix:path:/a/../b", err: `ca: selector "unix:path:/a/../b": path must be absolute and clean: invalid selector`},
		{in: "unix:pid:1", err: `ca: selector "unix:pid:1": unknown unix selector "pid" (want uid, gid or path): invalid selector`},
		{in: "k8s:ns:default"},
		{in: "k8s:sa:web"},
		{in: "k8s:pod-label:app:web"},
		{in: "k8s:pod-label:empty:"},
		{in: "k8s:pod-owner:ReplicaSet:web-5d8f"},
		{in: "k8s:container-image:registry.example/web@sha256:abc"},
		{in: "k8s:pod-uid:2ece296c-c5ec-11e7-858e-fa163e451acc"},
		{in: "k8s:ns:", err: `ca: selector "k8s:ns:": k8s:ns needs a value: invalid selector`},
		{in: "k8s:ns", err: `ca: selector "k8s:ns": k8s:ns needs a value: invalid selector`},
		{in: "k8s:pod-label:app", err: `ca: selector "k8s:pod-label:app": k8s:pod-label takes KEY:VALUE: invalid selector`},
		{in: "k8s:pod-label::v", err: `ca: selector "k8s:pod-label::v": k8s:pod-label takes KEY:VALUE: invalid selector`},
		{in: "k8s:ns:a\nb", err: `ca: selector "k8s:ns:a\nb": value has a control character: invalid selector`},
		{in: "k8s:namespace:x", err: `ca: selector "k8s:namespace:x": unknown k8s selector "namespace" (want ns, sa, node-name, pod-name, pod-uid, pod-label, pod-owner, pod-owner-uid, container-name, container-image, pod-image or pod-init-image): invalid selector`},
		{in: "docker:label:x", err: `ca: selector "docker:label:x": want unix:uid:N, unix:gid:N, unix:path:/abs/path or k8s:KIND:VALUE: invalid selector`},
		{in: "", err: `ca: selector "": want unix:uid:N, unix:gid:N, unix:path:/abs/path or k8s:KIND:VALUE: invalid selector`},
	}
	for _, tt := range tests {
		sel, err := ParseSelector(tt.in)
		if tt.err == "" {
			if err != nil || sel.String() != tt.in {
				t.Errorf("ParseSelector(%q) = %v, %v", tt.in, sel, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.err || !errors.Is(err, ErrInvalidSelector) {
			t.Errorf("ParseSelector(%q) error = %v, want %s", tt.in, err, tt.err)
		}
	}
}

func TestNormalizeSelectors(t *testing.T) {
	got, err := NormalizeSelectors([]string{"unix:uid:1", "unix:gid:2", "unix:uid:1"})
	if err != nil || !slices.Equal(got, []string{"unix:gid:2", "unix:uid:1"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	many := make([]string, MaxSelectors+1)
	if _, err := NormalizeSelectors(many); err == nil || err.Error() != "ca: 17 selectors, at most 16: invalid selector" {
		t.Fatalf("got %v", err)
	}
}

func TestWorkloadMatches(t *testing.T) {
	w := Workload{UID: 1000, GID: 100, Path: "/usr/bin/web", Attested: []string{"k8s:ns:prod", "k8s:pod-label:app:web"}}
	tests := []struct {
		sel  []string
		want bool
	}{
		{nil, false},
		{[]string{"unix:uid:1000"}, true},
		{[]string{"unix:uid:1000", "unix:gid:100", "unix:path:/usr/bin/web"}, true},
		{[]string{"unix:uid:1000", "unix:gid:101"}, false},
		{[]string{"unix:path:/usr/bin/db"}, false},
		{[]string{"unix:uid:bad"}, false},
		{[]string{"unix:uid:1000", "k8s:ns:prod"}, true},
		{[]string{"k8s:ns:prod", "k8s:pod-label:app:web"}, true},
		{[]string{"k8s:ns:dev"}, false},
		{[]string{"k8s:pod-label:app:we"}, false},
		{[]string{"k8s:ns:prod", "unix:uid:1"}, false},
	}
	for _, tt := range tests {
		if got := w.Matches(tt.sel); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.sel, got, tt.want)
		}
	}
	if (Workload{UID: 1}).Matches([]string{"unix:path:/x"}) {
		t.Error("unknown path matched")
	}
	if (Workload{UID: 1, Attested: []string{"unix:uid:2"}}).Matches([]string{"unix:uid:2"}) {
		t.Error("a unix selector matched from the attested list instead of the credentials")
	}
}

func TestSelectorLengthLimit(t *testing.T) {
	atLimit := "unix:path:/" + strings.Repeat("p", MaxSelectorBytes-len("unix:path:/"))
	if _, err := ParseSelector(atLimit); err != nil {
		t.Errorf("selector of %d bytes: %v", len(atLimit), err)
	}
	const want = "ca: selector of 1025 bytes exceeds the limit of 1024 bytes: invalid selector"
	if _, err := NormalizeSelectors([]string{atLimit + "q"}); err == nil || err.Error() != want || !errors.Is(err, ErrInvalidSelector) {
		t.Errorf("selector of 1025 bytes: %v, want %s", err, want)
	}
	// An invalid selector under the limit is quoted, truncated.
	_, err := ParseSelector("unix:path:relative/" + strings.Repeat("p", 900))
	if err == nil || len(err.Error()) > 250 || !strings.Contains(err.Error(), "(919 bytes)") {
		t.Errorf("bad selector: %v", err)
	}
}

func TestNormalizeFederatesWith(t *testing.T) {
	own := spiffeid.RequireTrustDomainFromString("example.org")
	got, err := NormalizeFederatesWith(own, []string{"spiffe://b.example", "a.example", "b.example"})
	if err != nil || !slices.Equal(got, []string{"a.example", "b.example"}) {
		t.Fatalf("got %v, %v", got, err)
	}
	if got, err := NormalizeFederatesWith(own, nil); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v, %v", got, err)
	}
	for in, want := range map[string]string{
		"example.org": "ca: federates with example.org: that is our own trust domain, whose bundle every workload gets: invalid spiffe id",
		"Bad TD":      `ca: trust domain "Bad TD": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores: invalid spiffe id`,
	} {
		if _, err := NormalizeFederatesWith(own, []string{in}); err == nil || err.Error() != want || !errors.Is(err, ErrInvalidID) {
			t.Errorf("%q: %v, want %s", in, err, want)
		}
	}
	if _, err := NormalizeFederatesWith(own, make([]string, MaxFederatesWith+1)); err == nil || err.Error() != "ca: 17 federated trust domains, at most 16: invalid spiffe id" {
		t.Errorf("too many: %v", err)
	}
}
