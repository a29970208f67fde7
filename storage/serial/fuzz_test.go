package serial

import (
	"math/big"
	"strings"
	"testing"
)

// FuzzParse: any input parses or errors (never panics); a parsed serial's
// canonical form is upper-case hex of even length that parses back to the
// same number, in hex, colon and decimal spellings.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"04A7A0FF", "4a7a0ff", "0x4A", "hex:ff", "04:a7:a0", "0d123", "dec:123", "dec:00", "", ":", "0d", "12xz", "-1", "00:", strings.Repeat("f", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		n, err := Parse(in)
		if err != nil {
			return
		}
		c := Format(n)
		if len(c)%2 != 0 || strings.Trim(c, "0123456789ABCDEF") != "" || len(c) > 2*MaxBytes {
			t.Fatalf("Format(Parse(%q)) = %q: not canonical", in, c)
		}
		var colon []string
		for i := 0; i < len(c); i += 2 {
			colon = append(colon, strings.ToLower(c[i:i+2]))
		}
		for _, sp := range []string{c, strings.ToLower(c), "00" + c, strings.Join(colon, ":"), "dec:" + n.Text(10)} {
			m, err := Parse(sp)
			if err != nil || m.Cmp(n) != 0 {
				t.Fatalf("Parse(%q) = %v, %v; want %v (from %q)", sp, m, err, n, in)
			}
		}
		if n.Sign() < 0 || n.Cmp(new(big.Int).Lsh(big.NewInt(1), 8*MaxBytes)) >= 0 {
			t.Fatalf("Parse(%q) = %v out of range", in, n)
		}
	})
}
