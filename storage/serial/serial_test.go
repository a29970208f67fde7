package serial

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"04A7A0FF", "04A7A0FF"},
		{"4a7a0ff", "04A7A0FF"},
		{"0004a7a0ff", "04A7A0FF"},
		{" 4A7A0FF\n", "04A7A0FF"},
		{"0x4a7a0ff", "04A7A0FF"},
		{"0X4A7A0FF", "04A7A0FF"},
		{"hex:4a7a0ff", "04A7A0FF"},
		{"04:a7:a0:ff", "04A7A0FF"},
		{"4:A7:A0:FF", "04A7A0FF"},
		{"00:04:a7:a0:ff", "04A7A0FF"},
		{"DEC:78094591", "04A7A0FF"},
		{"dec:0078094591", "04A7A0FF"},
		{"10", "10"},
		{"dec:10", "0A"},
		{"0D12", "0D12"},
		{"0d", "0D"},
		{"0", "00"},
		{"dec:0", "00"},
		{"80", "80"},
		{"00:80", "80"},
		{strings.Repeat("ff", MaxBytes), strings.Repeat("FF", MaxBytes)},
		{"000000" + strings.Repeat("ff", MaxBytes), strings.Repeat("FF", MaxBytes)},
	} {
		got, err := Canonical(c.in)
		if err != nil || got != c.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"12xz", `"12xz" is not hex (write decimal as dec:123)`},
		{"0x", `"0x" is not hex`},
		{"-12", `"-12" is not hex`},
		{"dec:", "decimal digits must follow"},
		{"dec:12a", "decimal digits must follow"},
		{"dec:-1", "decimal digits must follow"},
		{"04::a7", "groups of one or two digits"},
		{":04", "groups of one or two digits"},
		{"04a:7", "groups of one or two digits"},
		{"04 a7", "is not hex"},
		{strings.Repeat("f", 2*MaxBytes+1), "33 bytes long, at most 32"},
		{strings.Repeat("0", 300), "300 characters, at most 256"},
	} {
		_, err := Parse(c.in)
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an ErrSyntax error containing %q", c.in, err, c.want)
		}
	}
}

// TestFormatMatchesGoHex: the canonical form of a serial printed by
// big.Int.Text(16) (how tier0 records spell it) is that text upper-cased
// and padded to an even length: what the migrations compute in SQL.
func TestFormatMatchesGoHex(t *testing.T) {
	for _, v := range []string{"1", "f", "10", "abc", "4a7a0ff", "80", "ffffffffffffffffffffffffffffffff"} {
		n, _ := new(big.Int).SetString(v, 16)
		want := strings.ToUpper(v)
		if len(want)%2 == 1 {
			want = "0" + want
		}
		if got := Format(n); got != want {
			t.Errorf("Format(%s) = %s, want %s", v, got, want)
		}
	}
	if got := Format(new(big.Int)); got != "00" {
		t.Errorf("Format(0) = %s", got)
	}
}
