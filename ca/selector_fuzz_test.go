package ca

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParseSelector: arbitrary strings never panic, every error wraps
// ErrInvalidSelector and quotes at most a bounded part of the input, and
// an accepted selector prints back to exactly its input (so the stored
// form is the one an attestor emits and Matches compares).
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:0", "unix:path:/usr/bin/web", "k8s:ns:default", "k8s:pod-label:app:web", "k8s:pod-label::", "k8s:", "unix::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := ParseSelector(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSelector) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if len(err.Error()) > 2048 { // two quotes of at most 128 input bytes, escaped, and fixed text
				t.Fatalf("error of %d bytes echoes the input", len(err.Error()))
			}
			return
		}
		if sel.String() != s {
			t.Fatalf("accepted %q prints as %q", s, sel.String())
		}
		if strings.ContainsRune(s, 0) {
			t.Fatalf("accepted a NUL: %q", s)
		}
	})
}
