// Package serial parses certificate serial numbers in the spellings people
// and tools use and prints the one canonical form tier0 stores and looks
// up by (docs/AUDIT.md "Serial numbers").
//
// The canonical form is what `openssl x509 -serial` prints: the serial's
// magnitude as big-endian bytes without leading zero bytes, in upper-case
// hex, two digits a byte (so always an even number of digits; zero is
// "00"). A JWT-SVID's jti (128 random bits in hex) is canonicalised the
// same way.
//
// Accepted spellings (surrounding spaces are ignored):
//
//	04A7A0FF, 04a7a0ff, 4a7a0ff, 0004a7a0ff   hex, any case, any leading zeros
//	0x4a7a0ff, hex:4a7a0ff                    hex with a prefix
//	04:a7:a0:ff, 4:A7:A0:FF                   hex bytes separated by colons (openssl -text, browsers)
//	0d78094591, dec:78094335                  decimal, only with a prefix
//
// Unprefixed digits are always hex (openssl, Go's Text(16) and the tier0
// CLI print hex), so "10" is sixteen; write "0d10" or "dec:10" for ten.
package serial

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// MaxBytes bounds a serial's magnitude. RFC 5280 allows 20 octets; tier0
// issues at most 16 (128 bits); 32 leaves room for other CAs' serials.
const MaxBytes = 32

// maxInput bounds the spelling accepted (leading zeros, colons, prefix).
const maxInput = 256

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("serial: not a serial number")

// Parse reads a serial number in any accepted spelling. The error says what
// is wrong and wraps ErrSyntax; it quotes at most the first 40 bytes.
func Parse(s string) (*big.Int, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return nil, fmt.Errorf("%w: empty", ErrSyntax)
	}
	if len(in) > maxInput {
		return nil, fmt.Errorf("%w: %d characters, at most %d", ErrSyntax, len(in), maxInput)
	}
	lower := strings.ToLower(in)
	var n *big.Int
	switch {
	case strings.HasPrefix(lower, "dec:"):
		digits := lower[len("dec:"):]
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			return nil, fmt.Errorf("%w: %s: decimal digits must follow the dec: prefix", ErrSyntax, quote(in))
		}
		n, _ = new(big.Int).SetString(digits, 10)
	default:
		digits := lower
		for _, p := range []string{"0x", "hex:"} {
			if strings.HasPrefix(digits, p) {
				digits = digits[len(p):]
				break
			}
		}
		if strings.Contains(digits, ":") {
			groups := strings.Split(digits, ":")
			for i, g := range groups {
				if g == "" || len(g) > 2 {
					return nil, fmt.Errorf("%w: %s: colon-separated hex must be groups of one or two digits", ErrSyntax, quote(in))
				}
				if len(g) == 1 {
					groups[i] = "0" + g
				}
			}
			digits = strings.Join(groups, "")
		}
		if digits == "" || strings.Trim(digits, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("%w: %s is not hex (write decimal as dec:123)", ErrSyntax, quote(in))
		}
		n, _ = new(big.Int).SetString(digits, 16)
	}
	if n == nil {
		return nil, fmt.Errorf("%w: %s", ErrSyntax, quote(in))
	}
	if len(n.Bytes()) > MaxBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes long, at most %d", ErrSyntax, quote(in), len(n.Bytes()), MaxBytes)
	}
	return n, nil
}

// Format returns the canonical spelling of a non-negative serial.
func Format(n *big.Int) string {
	b := n.Bytes()
	if len(b) == 0 {
		return "00"
	}
	return fmt.Sprintf("%X", b)
}

// Canonical parses s and returns its canonical spelling.
func Canonical(s string) (string, error) {
	n, err := Parse(s)
	if err != nil {
		return "", err
	}
	return Format(n), nil
}

func quote(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q...", s[:40])
	}
	return fmt.Sprintf("%q", s)
}
