package flagconfig

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestSection: a flag marked with SectionAnnotation takes a YAML mapping
// from the file (as YAML text that decodes to the same mapping); a
// mapping under any other key is refused as before; the command line
// still wins.
func TestSection(t *testing.T) {
	cfg := writeFile(t, "listen: 127.0.0.1:1\nattestor-x:\n  ca_bundle: /etc/ca.pem\n  clusters:\n    prod: {allow: [a, b]}\n")
	fs, _ := newFlags(t, "--config", cfg)
	sec := fs.String("attestor-x", "", "")
	if err := fs.SetAnnotation("attestor-x", SectionAnnotation, []string{"yes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(fs, opts()); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := yaml.Unmarshal([]byte(*sec), &got); err != nil {
		t.Fatalf("section %q: %v", *sec, err)
	}
	if got["ca_bundle"] != "/etc/ca.pem" || !strings.Contains(*sec, "prod") {
		t.Fatalf("section = %q", *sec)
	}

	// Not a section flag: refused, naming file, line and key.
	cfg2 := writeFile(t, "listen:\n  a: b\n")
	fs2, _ := newFlags(t, "--config", cfg2)
	if _, err := Apply(fs2, opts()); err == nil || !strings.Contains(err.Error(), cfg2+":1: key \"listen\": want a value") {
		t.Fatalf("mapping for a plain flag: %v", err)
	}

	// The command line wins over the file.
	fs3, _ := newFlags(t, "--config", cfg)
	sec3 := fs3.String("attestor-x", "", "")
	_ = fs3.SetAnnotation("attestor-x", SectionAnnotation, []string{"yes"})
	if err := fs3.Parse([]string{"--attestor-x", "{ca_bundle: /cli.pem}"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(fs3, opts()); err != nil || *sec3 != "{ca_bundle: /cli.pem}" {
		t.Fatalf("flag over file: %q, %v", *sec3, err)
	}
}
