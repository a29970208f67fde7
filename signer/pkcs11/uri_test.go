package pkcs11

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	const q = "?module-path=/m.so&pin-source=file:/pin"
	for _, tc := range []struct {
		uri, want, err string
	}{
		{uri: "pkcs11:token=tier0;object=ca%20key;id=%01%ff" + q, want: "pkcs11:token=tier0;object=ca%20key;id=%01%FF"},
		{uri: "pkcs11:serial=abc;slot-id=3;id=%02;type=private" + q, want: "pkcs11:serial=abc;slot-id=3;id=%02"},
		{uri: "pkcs11:token=t;object=k;manufacturer=SoftHSM%20project" + q, want: "pkcs11:token=t;object=k"},
		{uri: "pkcs12:token=t", err: `signer/pkcs11: URI must start with "pkcs11:"`},
		{uri: "pkcs11:token=t;object=k?module-path=/m.so&pin-value=1234", err: "signer/pkcs11: pin-value is not accepted: never put a PIN in a URI; use pin-source=file:/path or pin-source=env:VAR"},
		{uri: "pkcs11:token=t;object=k;pin-value=1234" + q, err: `signer/pkcs11: pin-value is a query attribute (after '?'), not a path attribute`},
		{uri: "pkcs11:token=t;objct=k" + q, err: `signer/pkcs11: unknown URI path attribute "objct"`},
		{uri: "pkcs11:token=t;object=k?module-path=/m.so&pin-source=file:/p&foo=1", err: `signer/pkcs11: unknown URI query attribute "foo"`},
		{uri: "pkcs11:token=t;object=k;type=secret" + q, err: "signer/pkcs11: type=secret: a signing key URI must name a private key (type=private)"},
		{uri: "pkcs11:token=t;token=u;object=k" + q, err: `signer/pkcs11: URI attribute "token" given twice`},
		{uri: "pkcs11:token=t;id=%zz" + q, err: "signer/pkcs11: URI attribute id: bad percent-encoding"},
		{uri: "pkcs11:token=t;object" + q, err: `signer/pkcs11: malformed URI attribute "object" (want name=value)`},
		{uri: "pkcs11:token=t;1234" + q, err: "signer/pkcs11: malformed URI attribute (want name=value; not shown: it may hold a secret)"},
		{uri: "pkcs11:token=t;correcthorse" + q, err: "signer/pkcs11: malformed URI attribute (want name=value; not shown: it may hold a secret)"},
		{uri: "pkcs11:token=t;=pin-value=1234" + q, err: "signer/pkcs11: malformed URI attribute (want name=value; not shown: it may hold a secret)"},
		{uri: "pkcs11:token=t;object=k?pin-source=file:/p", err: "signer/pkcs11: URI needs module-path=/path/to/module.so"},
		{uri: "pkcs11:object=k" + q, err: "signer/pkcs11: URI needs token=, serial= or slot-id= to select a token"},
		{uri: "pkcs11:token=t" + q, err: "signer/pkcs11: URI needs object= or id= to select a key"},
		{uri: "pkcs11:token=t;object=k?module-path=/m.so", err: "signer/pkcs11: URI needs pin-source=file:/path or pin-source=env:VAR"},
		{uri: "pkcs11:token=t;slot-id=x;object=k" + q, err: `signer/pkcs11: slot-id "x" is not a number`},
		{uri: "pkcs11:token=t;object=k" + q + "&x-session-copy=maybe", err: "signer/pkcs11: x-session-copy=maybe: want true or false"},
	} {
		u, err := ParseURI(tc.uri)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseURI(%q) error\n got: %v\nwant: %s", tc.uri, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tc.uri, err)
			continue
		}
		if got := u.String(); got != tc.want {
			t.Errorf("ParseURI(%q).String() = %q, want %q", tc.uri, got, tc.want)
		}
		if strings.Contains(u.String(), "pin") || strings.Contains(u.String(), "module") {
			t.Errorf("String() leaks query attributes: %s", u)
		}
	}
	u, _ := ParseURI("pkcs11:token=t;id=%00%01?module-path=/m.so&pin-source=env:P")
	if !bytes.Equal(u.ID, []byte{0, 1}) || u.PinSource != "env:P" || u.ModulePath != "/m.so" || !u.SessionCopy {
		t.Errorf("ParseURI: got %+v", u)
	}
	if u, _ := ParseURI("pkcs11:token=t;id=%01?module-path=/m.so&pin-source=env:P&x-session-copy=false"); u == nil || u.SessionCopy {
		t.Errorf("x-session-copy=false: got %+v", u)
	}
}

func TestReadPIN(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("s3cret-pin\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	readOnly := filepath.Join(dir, "pin-ro")
	if err := os.WriteFile(readOnly, []byte("s3cret-pin\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	loose := map[os.FileMode]string{}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o700, 0o666} {
		p := filepath.Join(dir, fmt.Sprintf("pin-%04o", mode))
		if err := os.WriteFile(p, []byte("s3cret-pin\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // not subject to the umask
			t.Fatal(err)
		}
		loose[mode] = p
	}
	t.Setenv("TIER0_TEST_PIN", "s3cret-pin")
	t.Setenv("TIER0_TEST_EMPTY", "")
	for _, src := range []string{"file:" + pinFile, "file://" + pinFile, pinFile, "env:TIER0_TEST_PIN", "file:" + readOnly} {
		pin, err := readPIN(src)
		if err != nil || pin != "s3cret-pin" {
			t.Errorf("readPIN(%q) = %q, %v", src, pin, err)
		}
	}
	for _, tc := range []struct{ src, err string }{
		{"env:TIER0_TEST_EMPTY", "signer/pkcs11: pin-source env:TIER0_TEST_EMPTY: variable is unset or empty"},
		{"file:" + empty, "signer/pkcs11: pin-source " + empty + ": file is empty"},
		{"relative/pin", `signer/pkcs11: pin-source "relative/pin": want file:/absolute/path or env:VAR`},
		{"file://host/pin", `signer/pkcs11: pin-source "file://host/pin": want file:/absolute/path`},
		{"file:" + dir + "/missing", "signer/pkcs11: pin-source: stat " + dir + "/missing: no such file or directory"},
		{"file:" + loose[0o644], "signer/pkcs11: pin-source file " + loose[0o644] + " has mode 0644; it must be 0600 or 0400 (chmod 600 " + loose[0o644] + ")"},
		{loose[0o640], "signer/pkcs11: pin-source file " + loose[0o640] + " has mode 0640; it must be 0600 or 0400 (chmod 600 " + loose[0o640] + ")"},
		{"file:" + loose[0o604], "signer/pkcs11: pin-source file " + loose[0o604] + " has mode 0604; it must be 0600 or 0400 (chmod 600 " + loose[0o604] + ")"},
		{"file:" + loose[0o660], "signer/pkcs11: pin-source file " + loose[0o660] + " has mode 0660; it must be 0600 or 0400 (chmod 600 " + loose[0o660] + ")"},
		{"file:" + loose[0o700], "signer/pkcs11: pin-source file " + loose[0o700] + " has mode 0700; it must be 0600 or 0400 (chmod 600 " + loose[0o700] + ")"},
		{"file:" + loose[0o666], "signer/pkcs11: pin-source file " + loose[0o666] + " has mode 0666; it must be 0600 or 0400 (chmod 600 " + loose[0o666] + ")"},
	} {
		_, err := readPIN(tc.src)
		if err == nil || err.Error() != tc.err {
			t.Errorf("readPIN(%q) error\n got: %v\nwant: %s", tc.src, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("readPIN(%q) error contains the PIN: %v", tc.src, err)
		}
	}
}

func TestECDSADER(t *testing.T) {
	// Hand-made cases: high bit set (needs a 0x00 pad), leading zero bytes
	// (must be stripped), minimal values.
	pad := func(b ...byte) []byte { return append(make([]byte, 32-len(b)), b...) }
	high := bytes.Repeat([]byte{0x80}, 32)
	for _, tc := range []struct {
		name string
		raw  []byte
		r, s *big.Int
	}{
		{"high bit", append(high, high...), new(big.Int).SetBytes(high), new(big.Int).SetBytes(high)},
		{"leading zeros", append(pad(1), pad(0x7f, 0xff)...), big.NewInt(1), big.NewInt(0x7fff)},
		{"zero then high bit", append(pad(0x80, 0), pad(0xff)...), big.NewInt(0x8000), big.NewInt(0xff)},
	} {
		der, err := ecdsaDER(tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var sig struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(der, &sig)
		if err != nil || len(rest) != 0 || sig.R.Cmp(tc.r) != 0 || sig.S.Cmp(tc.s) != 0 {
			t.Errorf("%s: DER %x decodes to %v, %v (%v)", tc.name, der, sig.R, sig.S, err)
		}
	}
	if want := []byte{0x30, 0x08, 0x02, 0x02, 0x00, 0x80, 0x02, 0x02, 0x00, 0xff}; !bytes.Equal(must(ecdsaDER(append(pad(0x80), pad(0xff)...))), want) {
		t.Errorf("DER of r=0x80,s=0xff = %x, want %x", must(ecdsaDER(append(pad(0x80), pad(0xff)...))), want)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, make([]byte, 64)} {
		if _, err := ecdsaDER(bad); err == nil {
			t.Errorf("ecdsaDER(%x) succeeded", bad)
		}
	}
	// Real signatures: about 1 in 256 has r or s shorter than 32 bytes and
	// half have the high bit set; all must verify after conversion.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for i := range 1000 {
		d := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		r, s, err := ecdsa.Sign(rand.Reader, k, d[:])
		if err != nil {
			t.Fatal(err)
		}
		raw := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		if !ecdsa.VerifyASN1(&k.PublicKey, d[:], must(ecdsaDER(raw))) {
			t.Fatalf("signature %d (r=%x s=%x) does not verify after conversion", i, r, s)
		}
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
