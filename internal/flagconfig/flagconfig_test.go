package flagconfig

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// vals are the flags of a small command, as a server's would be.
type vals struct {
	dataDir, listen, httpAddr, store, config string
	maxQueue                                 int
	tokenCount                               int
	optional                                 bool
	ttl                                      time.Duration
	join                                     []string
	tags                                     []string
}

func newFlags(t *testing.T, args ...string) (*pflag.FlagSet, *vals) {
	t.Helper()
	v := &vals{}
	fs := pflag.NewFlagSet("server", pflag.ContinueOnError)
	fs.StringVar(&v.dataDir, "data-dir", "./data", "")
	fs.StringVar(&v.listen, "listen", "127.0.0.1:8443", "")
	fs.StringVar(&v.httpAddr, "http", "127.0.0.1:8080", "")
	fs.StringVar(&v.store, "store", "", "")
	fs.StringVar(&v.config, "config", "", "")
	fs.IntVar(&v.maxQueue, "max-queue", 1024, "")
	fs.IntVar(&v.tokenCount, "token-count", 1, "")
	fs.BoolVar(&v.optional, "store-optional", false, "")
	fs.DurationVar(&v.ttl, "agent-ttl", time.Hour, "")
	fs.StringSliceVar(&v.join, "join", []string{"default:1"}, "")
	fs.StringArrayVar(&v.tags, "tag", nil, "")
	fs.Bool("help", false, "")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs, v
}

func envOf(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tier0.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func opts(env ...string) Options {
	return Options{
		EnvPrefix:  "TIER0_",
		FileFlag:   "config",
		EnvAliases: map[string]string{"TIER0_DATA": "data-dir"},
		Skip:       []string{"help"},
		LookupEnv:  envOf(env...),
	}
}

func sourceOf(t *testing.T, srcs []Source, name string) Source {
	t.Helper()
	i := slices.IndexFunc(srcs, func(s Source) bool { return s.Flag == name })
	if i < 0 {
		t.Fatalf("no source for %s in %+v", name, srcs)
	}
	return srcs[i]
}

func TestEnvName(t *testing.T) {
	for name, want := range map[string]string{
		"listen": "TIER0_LISTEN", "data-dir": "TIER0_DATA_DIR", "max-in-flight": "TIER0_MAX_IN_FLIGHT",
	} {
		if got := EnvName("TIER0_", name); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestPrecedence: flag > env > file > default, each flag from the
// strongest source that has it, and Sources says which.
func TestPrecedence(t *testing.T) {
	path := writeFile(t, "listen: 10.0.0.1:1\nhttp: 10.0.0.1:2\nmax-queue: 7\nagent-ttl: 30m\n")
	fs, v := newFlags(t, "--config", path, "--listen", "127.0.0.1:9")
	srcs, err := Apply(fs, opts("TIER0_HTTP", "127.0.0.1:10", "TIER0_MAX_QUEUE", "8"))
	if err != nil {
		t.Fatal(err)
	}
	if v.listen != "127.0.0.1:9" || v.httpAddr != "127.0.0.1:10" || v.maxQueue != 8 || v.ttl != 30*time.Minute || v.dataDir != "./data" {
		t.Fatalf("values = %+v", v)
	}
	for name, want := range map[string]Source{
		"listen":    {Origin: FromFlag, Where: "--listen"},
		"http":      {Origin: FromEnv, Where: "TIER0_HTTP"},
		"max-queue": {Origin: FromEnv, Where: "TIER0_MAX_QUEUE"},
		"agent-ttl": {Origin: FromFile, Where: path + ":4 agent-ttl"},
		"config":    {Origin: FromFlag, Where: "--config"},
	} {
		got := sourceOf(t, srcs, name)
		if got.Origin != want.Origin || got.Where != want.Where {
			t.Errorf("%s: source %+v, want %+v", name, got, want)
		}
	}
	if slices.ContainsFunc(srcs, func(s Source) bool { return s.Flag == "data-dir" }) {
		t.Errorf("data-dir has a source but kept its default: %+v", srcs)
	}
	if !slices.IsSortedFunc(srcs, func(a, b Source) int { return strings.Compare(a.Flag, b.Flag) }) {
		t.Errorf("sources not in flag order: %+v", srcs)
	}
}

func TestConfigPathFromEnv(t *testing.T) {
	path := writeFile(t, "listen: 127.0.0.1:7\n")
	fs, v := newFlags(t)
	srcs, err := Apply(fs, opts("TIER0_CONFIG", path))
	if err != nil {
		t.Fatal(err)
	}
	if v.listen != "127.0.0.1:7" || v.config != path {
		t.Fatalf("listen %q config %q", v.listen, v.config)
	}
	if s := sourceOf(t, srcs, "config"); s.Where != "TIER0_CONFIG" {
		t.Errorf("config source %+v", s)
	}
}

func TestDeprecatedAlias(t *testing.T) {
	fs, v := newFlags(t)
	srcs, err := Apply(fs, opts("TIER0_DATA", "/old"))
	if err != nil {
		t.Fatal(err)
	}
	if s := sourceOf(t, srcs, "data-dir"); v.dataDir != "/old" || !s.Deprecated || s.Where != "TIER0_DATA" {
		t.Fatalf("data-dir %q source %+v", v.dataDir, s)
	}
	fs, v = newFlags(t)
	if _, err := Apply(fs, opts("TIER0_DATA", "/old", "TIER0_DATA_DIR", "/new")); err != nil {
		t.Fatal(err)
	}
	if v.dataDir != "/new" {
		t.Fatalf("TIER0_DATA_DIR must beat its deprecated alias: %q", v.dataDir)
	}
	// The alias is an environment variable: it beats the file.
	fs, v = newFlags(t, "--config", writeFile(t, "data-dir: /file\n"))
	if _, err := Apply(fs, opts("TIER0_DATA", "/old")); err != nil {
		t.Fatal(err)
	}
	if v.dataDir != "/old" {
		t.Fatalf("env alias vs file: %q", v.dataDir)
	}
}

// TestUnrelatedAndEmptyEnv: variables with the prefix that name no flag
// (used by tests and other tools) are ignored; an empty one is unset.
func TestUnrelatedAndEmptyEnv(t *testing.T) {
	fs, v := newFlags(t)
	srcs, err := Apply(fs, opts("TIER0_REQUIRE_INTEGRATION", "1", "TIER0_CLUSTER_BENCH", "x", "TIER0_LISTEN", "", "TIER0_DATA", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 0 || v.listen != "127.0.0.1:8443" || v.dataDir != "./data" {
		t.Fatalf("sources %+v, values %+v", srcs, v)
	}
}

func TestFileTypesAndLists(t *testing.T) {
	path := writeFile(t, `# tier0
store-optional: true
agent-ttl: 45m
max-queue: 12
join: [a:1, "b:2"]
tag:
  - x,y
  - z
store: "postgres://u@db/t?sslmode=verify-full"
`)
	fs, v := newFlags(t, "--config", path)
	if _, err := Apply(fs, opts()); err != nil {
		t.Fatal(err)
	}
	if !v.optional || v.ttl != 45*time.Minute || v.maxQueue != 12 || v.store != "postgres://u@db/t?sslmode=verify-full" {
		t.Fatalf("values %+v", v)
	}
	if !slices.Equal(v.join, []string{"a:1", "b:2"}) {
		t.Errorf("join = %q: a list replaces the default", v.join)
	}
	if !slices.Equal(v.tags, []string{"x,y", "z"}) {
		t.Errorf("tag (string array) = %q", v.tags)
	}
	fs, v = newFlags(t, "--config", writeFile(t, "join: []\n"))
	if _, err := Apply(fs, opts()); err != nil {
		t.Fatal(err)
	}
	if len(v.join) != 0 {
		t.Errorf("empty list: join = %q", v.join)
	}
}

// TestFileKeyOverriddenIsKnown: a key whose flag came from a stronger
// source is still a valid key.
func TestFileKeyOverriddenIsKnown(t *testing.T) {
	fs, v := newFlags(t, "--config", writeFile(t, "listen: 1.2.3.4:5\n"), "--listen", "127.0.0.1:1")
	if _, err := Apply(fs, opts()); err != nil || v.listen != "127.0.0.1:1" {
		t.Fatalf("listen %q, err %v", v.listen, err)
	}
}

func TestEmptyFiles(t *testing.T) {
	for _, body := range []string{"", "# only a comment\n", "---\n"} {
		fs, _ := newFlags(t, "--config", writeFile(t, body))
		srcs, err := Apply(fs, opts())
		if err != nil {
			t.Errorf("%q: %v", body, err)
		} else if len(srcs) != 1 || srcs[0].Flag != "config" {
			t.Errorf("%q: sources %+v", body, srcs)
		}
	}
}

// TestErrorsNameTheirSource: every bad input is an error that says where
// it came from.
func TestErrorsNameTheirSource(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		want       []string
	}{
		{name: "unknown key", file: "listen: a:1\nlisten-addr: b:2\n", want: []string{`:2: unknown key "listen-addr"`, "tier0.yaml"}},
		{name: "command-line only key", file: "config: other.yaml\n", want: []string{`unknown key "config" (allowed on the command line only)`}},
		{name: "help key", file: "help: true\n", want: []string{`unknown key "help"`}},
		{name: "bad int in file", file: "\nmax-queue: lots\n", want: []string{"tier0.yaml:2 max-queue", `invalid argument "lots"`}},
		{name: "bad duration in env", env: []string{"TIER0_AGENT_TTL", "soon"}, want: []string{"environment TIER0_AGENT_TTL", "--agent-ttl"}},
		{name: "bad bool in env", env: []string{"TIER0_STORE_OPTIONAL", "maybe"}, want: []string{"environment TIER0_STORE_OPTIONAL"}},
		{name: "list for a scalar", file: "listen: [a, b]\n", want: []string{"--listen takes one value, not a list"}},
		{name: "mapping value", file: "listen: {host: a}\n", want: []string{`key "listen": want a value, a list of values or {file: PATH}`}},
		{name: "null value", file: "listen:\n", want: []string{`key "listen": no value`}},
		{name: "repeated key", file: "listen: a\nlisten: b\n", want: []string{`:2: key "listen" repeated (first on line 1)`}},
		{name: "not a mapping", file: "- listen\n", want: []string{"want a mapping"}},
		{name: "two documents", file: "listen: a\n---\nhttp: b\n", want: []string{"one YAML document expected"}},
		{name: "syntax", file: "listen: [a\n", want: []string{"tier0.yaml"}},
		{name: "nested list", file: "join: [[a]]\n", want: []string{"a list element must be a plain value"}},
		{name: "two errors", file: "nope: 1\nmax-queue: x\n", want: []string{`unknown key "nope"`, "max-queue"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.file != "" {
				args = []string{"--config", writeFile(t, tc.file)}
			}
			fs, _ := newFlags(t, args...)
			_, err := Apply(fs, opts(tc.env...))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	fs, _ := newFlags(t, "--config", filepath.Join(t.TempDir(), "nope.yaml"))
	if _, err := Apply(fs, opts()); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("err = %v", err)
	}
}

// TestSecretsStayOut: values of secret-named flags appear neither in
// errors nor in the log line; other values do.
func TestSecretsStayOut(t *testing.T) {
	const pw = "hunter2-Secret"
	fs, _ := newFlags(t)
	_, err := Apply(fs, opts("TIER0_TOKEN_COUNT", pw))
	if err == nil || strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "TIER0_TOKEN_COUNT") {
		t.Fatalf("err = %v", err)
	}
	path := writeFile(t, "store: postgres://u:"+pw+"@db/t\n")
	fs, _ = newFlags(t, "--config", path)
	srcs, err := Apply(fs, opts("TIER0_LISTEN", "127.0.0.1:5"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("configuration", LogAttrs(fs, srcs)...)
	line := buf.String()
	if strings.Contains(line, pw) || !strings.Contains(line, `store="<redacted> (`+path+`:1 store)"`) {
		t.Errorf("the log line leaks or lacks the store source:\n%s", line)
	}
	if !strings.Contains(line, `listen="127.0.0.1:5 (TIER0_LISTEN)"`) {
		t.Errorf("the log line lacks listen:\n%s", line)
	}
}

func TestNoFileFlag(t *testing.T) {
	fs, v := newFlags(t)
	o := opts("TIER0_LISTEN", "127.0.0.1:3", "TIER0_CONFIG", "/does/not/exist")
	o.FileFlag = ""
	if _, err := Apply(fs, o); err != nil || v.listen != "127.0.0.1:3" {
		t.Fatalf("listen %q err %v", v.listen, err)
	}
}

func TestOversizedFile(t *testing.T) {
	fs, _ := newFlags(t, "--config", writeFile(t, "listen: "+strings.Repeat("a", maxFileSize)+"\n"))
	if _, err := Apply(fs, opts()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestStripEnv(t *testing.T) {
	got := StripEnv([]string{"PATH=/bin", "TIER0_CONFIG=/etc/tier0/tier0.yaml", "TIER0_STORE=x", "HOME=/root", "XTIER0_A=1"}, "TIER0_")
	if want := []string{"PATH=/bin", "HOME=/root", "XTIER0_A=1"}; !slices.Equal(got, want) {
		t.Fatalf("StripEnv = %q, want %q", got, want)
	}
}

// TestValueFromFile: {file: PATH} sets a flag from a file of its own (a
// mounted Secret), trailing line breaks cut; the source names the file; a
// missing, empty or non-regular file is an error naming the path, never
// the contents.
func TestValueFromFile(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("s3cret-token\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, "store: {file: "+tok+"}\nlisten: 127.0.0.1:1\n")
	fs, v := newFlags(t, "--config", cfg)
	srcs, err := Apply(fs, opts())
	if err != nil {
		t.Fatal(err)
	}
	if v.store != "s3cret-token" {
		t.Fatalf("store = %q", v.store)
	}
	s := sourceOf(t, srcs, "store")
	if want := cfg + ":1 store from " + tok; s.Where != want || s.Origin != FromFile {
		t.Errorf("source %+v, want %q", s, want)
	}
	if got := s.String(v.store); strings.Contains(got, "s3cret") {
		t.Errorf("secret shown: %q", got)
	}
	for _, tc := range []struct{ body, want string }{
		{"store: {file: " + filepath.Join(dir, "missing") + "}\n", ":1 store: value file: stat " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"store: {file: " + empty + "}\n", ":1 store: value file " + empty + " is empty"},
		{"store: {file: " + dir + "}\n", ":1 store: value file " + dir + ": not a regular file"},
		{"store: {path: " + tok + "}\n", ":1: key \"store\": want a value, a list of values or {file: PATH}"},
		{"store: {file: a, other: b}\n", ":1: key \"store\": want a value, a list of values or {file: PATH}"},
		{"max-queue: {file: " + tok + "}\n", ":1 max-queue from " + tok + ": invalid argument \"s3cret-token\" for \"--max-queue\" flag: strconv.ParseInt: parsing \"s3cret-token\": invalid syntax"},
	} {
		p := writeFile(t, tc.body)
		fs, _ := newFlags(t, "--config", p)
		_, err := Apply(fs, opts())
		if err == nil || !strings.Contains(err.Error(), p+tc.want) {
			t.Errorf("%q: err %v, want ...%s", tc.body, err, tc.want)
		}
	}
}
