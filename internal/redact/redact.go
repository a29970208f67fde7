// Package redact keeps secrets and oversized input out of errors and logs:
// URL redacts the credentials of one URL or DSN, Text those of every URL
// and password=... pair inside free text (an error message from a driver or
// an HTTP client), and Quote quotes untrusted input for a message without
// echoing more than MaxEcho bytes of it.
package redact

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Mask replaces redacted credentials.
const Mask = "xxxxx"

// MaxEcho is how many bytes of untrusted input Quote echoes.
const MaxEcho = 128

// URL returns raw with the whole userinfo ("user:pass@") of a URL replaced
// by Mask, so that neither a password nor a token used as the user name is
// echoed: "postgres://xxxxx@db:5432/tier0". Input that is not a URL with
// userinfo is returned through Text (which also masks password=... pairs of
// key=value DSNs).
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return Text(raw)
	}
	u.User = url.User(Mask)
	return Text(u.String())
}

// userinfo matches "scheme://userinfo@" anywhere in a text; the userinfo
// stops at what ends a URL authority ('/', '?', '#') or the text around it
// (space, quotes), and runs to the last '@' before that, so a password with
// a raw '@' is masked whole.
var userinfo = regexp.MustCompile("([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\\s\"'`<>]*@")

// password matches password=VALUE (also passwd, pwd; any case), as in
// key=value DSNs and URL queries.
var password = regexp.MustCompile(`(?i)\b(password|passwd|pwd)=('[^']*'|"[^"]*"|[^\s&;,'"]*)`)

// Text masks the userinfo of every URL in s and every password=VALUE pair:
// meant for error text that may quote an endpoint or a DSN.
func Text(s string) string {
	if !strings.Contains(s, "@") && !strings.Contains(s, "=") {
		return s // fast path: neither pattern can match
	}
	s = userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	return password.ReplaceAllString(s, "${1}="+Mask)
}

// Error is Text(err.Error()), "" for nil.
func Error(err error) string {
	if err == nil {
		return ""
	}
	return Text(err.Error())
}

// Err wraps err so that its message is Text(err.Error()) while errors.Is
// and errors.As still see err; nil stays nil.
func Err(err error) error {
	if err == nil {
		return nil
	}
	return redacted{err}
}

type redacted struct{ err error }

func (r redacted) Error() string { return Text(r.err.Error()) }
func (r redacted) Unwrap() error { return r.err }

// Quote returns s quoted (strconv.Quote) when it is at most MaxEcho bytes,
// else its first MaxEcho bytes (cut at a rune boundary) quoted and followed
// by "... (N bytes)": untrusted input in an error or a log line never
// echoes more than that.
func Quote(s string) string {
	head, n := cut(s)
	if n == 0 {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%s... (%d bytes)", strconv.Quote(head), n)
}

// Clip is Quote without the quotes, for a log attribute: s itself when it
// is at most MaxEcho bytes, else its head and "... (N bytes)".
func Clip(s string) string {
	head, n := cut(s)
	if n == 0 {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", head, n)
}

// cut returns the first MaxEcho bytes of s (at a rune boundary) and len(s),
// or s and 0 when s is short enough to echo whole.
func cut(s string) (string, int) {
	if len(s) <= MaxEcho {
		return s, 0
	}
	i := MaxEcho
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], len(s)
}
