package ca

import (
	"errors"
	"slices"
	"strings"
	"testing"
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
		{in: "k8s:ns:default", err: `ca: selector "k8s:ns:default": want unix:uid:N, unix:gid:N or unix:path:/abs/path: invalid selector`},
		{in: "", err: `ca: selector "": want unix:uid:N, unix:gid:N or unix:path:/abs/path: invalid selector`},
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
	w := Workload{UID: 1000, GID: 100, Path: "/usr/bin/web"}
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
	}
	for _, tt := range tests {
		if got := w.Matches(tt.sel); got != tt.want {
			t.Errorf("Matches(%v) = %v, want %v", tt.sel, got, tt.want)
		}
	}
	if (Workload{UID: 1}).Matches([]string{"unix:path:/x"}) {
		t.Error("unknown path matched")
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
