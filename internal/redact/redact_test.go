package redact

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://tier0:s3cret@db:5432/tier0?sslmode=verify-full", "postgres://xxxxx@db:5432/tier0?sslmode=verify-full"},
		{"https://TOKEN@bundle.example.org/bundle", "https://xxxxx@bundle.example.org/bundle"},
		{"https://bundle.example.org/bundle", "https://bundle.example.org/bundle"},
		{"postgres://db/tier0?user=u&password=p4ss", "postgres://db/tier0?user=u&password=xxxxx"},
		{"host=db user=tier0 password=s3cret dbname=tier0", "host=db user=tier0 password=xxxxx dbname=tier0"},
		{"host=db password='a b c' dbname=x", "host=db password=xxxxx dbname=x"},
		{"sqlite:/var/lib/tier0/records.db", "sqlite:/var/lib/tier0/records.db"},
		// Unparsable as a URL (bad escape): the text rule still masks it.
		{"postgres://u:p%zz@db/x", "postgres://xxxxx@db/x"},
		{"", ""},
	}
	for _, c := range cases {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestText(t *testing.T) {
	cases := []struct{ in, want string }{
		{`Get "https://alice:pw@peer.example:8443/b": dial tcp: connection refused`,
			`Get "https://xxxxx@peer.example:8443/b": dial tcp: connection refused`},
		// A raw '@' inside the password: masked up to the last '@'.
		{"open postgres://u:p@ss@db:5432/x failed", "open postgres://xxxxx@db:5432/x failed"},
		{"two: http://a:b@h1/ and https://c:d@h2/", "two: http://xxxxx@h1/ and https://xxxxx@h2/"},
		{"mail me at someone@example.org", "mail me at someone@example.org"},
		{"PASSWORD=hunter2 then", "PASSWORD=xxxxx then"},
		{"no secrets here", "no secrets here"},
	}
	for _, c := range cases {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := Error(errors.New("x https://u:p@h/")); got != "x https://xxxxx@h/" {
		t.Errorf("Error = %q", got)
	}
	if Error(nil) != "" || Err(nil) != nil {
		t.Error("Error(nil) or Err(nil) is not empty")
	}
	cause := &url.Error{Op: "Get", URL: "https://u:p@h/", Err: context.DeadlineExceeded}
	err := Err(cause)
	if err.Error() != `Get "https://xxxxx@h/": context deadline exceeded` || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err = %v (Is deadline: %v)", err, errors.Is(err, context.DeadlineExceeded))
	}
}

func TestQuote(t *testing.T) {
	if got := Quote("short"); got != `"short"` {
		t.Errorf("Quote(short) = %s", got)
	}
	long := strings.Repeat("a", 1<<20)
	got := Quote(long)
	if want := `"` + strings.Repeat("a", MaxEcho) + `"... (1048576 bytes)`; got != want {
		t.Errorf("Quote(1 MiB) = %.60s..., want the first %d bytes and the size", got, MaxEcho)
	}
	if got := Clip(long); got != strings.Repeat("a", MaxEcho)+"... (1048576 bytes)" {
		t.Errorf("Clip(1 MiB) = %.60s...", got)
	}
	if got := Clip("short"); got != "short" {
		t.Errorf("Clip(short) = %s", got)
	}
	// A multi-byte rune across the cut is not split.
	s := strings.Repeat("a", MaxEcho-1) + "é" + "tail"
	if got := Quote(s); !strings.HasPrefix(got, `"`+strings.Repeat("a", MaxEcho-1)+`"...`) {
		t.Errorf("Quote cut a rune: %s", got)
	}
}

func FuzzText(f *testing.F) {
	f.Add("postgres://u:secret@db/x")
	f.Add("https://a:b@c@d/e password=zz")
	f.Fuzz(func(t *testing.T, s string) {
		out := Text(s)
		// Idempotent, and never longer than needed to mask.
		if Text(out) != out {
			t.Fatalf("Text is not idempotent on %q: %q then %q", s, out, Text(out))
		}
		if strings.Contains(s, "postgres://u:secret@") && strings.Contains(out, "secret@") {
			t.Fatalf("credential survived: %q", out)
		}
		if q := Quote(s); len(s) > MaxEcho && !strings.HasSuffix(q, " bytes)") {
			t.Fatalf("Quote of %d bytes does not say it was cut: %q", len(s), q)
		}
	})
}
