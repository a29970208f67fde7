package pkcs11

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParseURI: a pkcs11: URI comes from operators' configuration. Any
// input gives a URI or an error, never a panic; a parsed URI's String()
// (its key identifier, logged) carries no query attribute and parses back
// to the same key selection.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=tier0;object=ca%20key;id=%01%ff?module-path=/m.so&pin-source=file:/pin",
		"pkcs11:serial=abc;slot-id=3;id=%02;type=private?module-path=/m.so&pin-source=env:P&x-session-copy=false",
		"pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234",
		"pkcs11:token=t;token=u;object=k?module-path=/m.so&pin-source=file:/p",
		"pkcs11:slot-id=18446744073709551616;object=k?module-path=/m.so&pin-source=file:/p",
		"pkcs11:token=%zz;object=k",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURI(s)
		if err != nil {
			if _, pin, ok := strings.Cut(s, "pin-value="); ok && len(pin) >= 4 && strings.Contains(err.Error(), pin[:4]) && !strings.Contains(strings.SplitN(s, "pin-value=", 2)[0], pin[:4]) {
				t.Fatalf("error echoes the inline PIN: %v", err)
			}
			return
		}
		id := u.String()
		if strings.Contains(id, "?") || strings.Contains(id, "pin-source=") || strings.Contains(id, "module-path=") {
			t.Fatalf("String() = %q leaks query attributes", id)
		}
		back, err := ParseURI(id + "?module-path=/m.so&pin-source=env:P")
		if err != nil {
			t.Fatalf("String() = %q does not parse back: %v", id, err)
		}
		if back.String() != id || back.Token != u.Token || back.Serial != u.Serial || back.Object != u.Object || !bytes.Equal(back.ID, u.ID) ||
			(back.SlotID == nil) != (u.SlotID == nil) || (u.SlotID != nil && *back.SlotID != *u.SlotID) {
			t.Fatalf("round trip of %q: %+v vs %+v", s, back, u)
		}
	})
}
