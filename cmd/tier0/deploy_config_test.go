package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/tier0-ca/tier0/internal/flagconfig"
)

// serverFlagSet is the flag set `tier0 server` parses, with --config set
// to path: its own flags and the inherited --data-dir and --log-level.
func serverFlagSet(t *testing.T, path string) *pflag.FlagSet {
	t.Helper()
	root := newRootCmd(&globalFlags{})
	srv, _, err := root.Find([]string{"server"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ParseFlags([]string{"--config", path}); err != nil {
		t.Fatal(err)
	}
	return srv.Flags()
}

// TestDeployConfigs: the config files shipped in deploy/ (the systemd
// example and the per-pod files of the Kubernetes ConfigMap, rendered from
// the Helm chart) are valid for `tier0 server`: every key a flag, every
// value accepted by it; and every TIER0_ variable the manifests set names
// a flag, so none is silently ignored.
func TestDeployConfigs(t *testing.T) {
	manifest, err := os.ReadFile("../../deploy/k8s/tier0.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The join tokens the pods read (join-token-file: /etc/tier0/join/POD), here.
	tmp := t.TempDir()
	joinDir := filepath.Join(tmp, "join")
	if err := os.Mkdir(joinDir, 0o700); err != nil {
		t.Fatal(err)
	}
	paths := []string{"../../deploy/systemd/tier0.yaml"}
	var k8sCfg string
	for name, body := range configMapFiles(t, manifest, "tier0") {
		if err := os.WriteFile(filepath.Join(joinDir, strings.TrimSuffix(name, ".yaml")), []byte("token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		k8sCfg = filepath.Join(tmp, name)
		if err := os.WriteFile(k8sCfg, []byte(strings.ReplaceAll(body, "/etc/tier0/join/", joinDir+"/")), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, k8sCfg)
	}
	if len(paths) < 4 {
		t.Fatalf("the ConfigMap holds %d pod config files, want 3", len(paths)-1)
	}
	noEnv := func(string) (string, bool) { return "", false }
	for _, path := range paths {
		fs := serverFlagSet(t, path)
		opts := serverConfigOptions
		opts.LookupEnv = noEnv
		srcs, err := flagconfig.Apply(fs, opts)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if len(srcs) < 6 {
			t.Errorf("%s sets only %d flags: %+v", path, len(srcs), srcs)
		}
	}
	fs := serverFlagSet(t, k8sCfg)
	unit, err := os.ReadFile("../../deploy/systemd/tier0.service")
	if err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`TIER0_[A-Z0-9_]+`)
	for _, src := range [][]byte{manifest, unit} {
		for _, v := range vars.FindAll(src, -1) {
			name := string(v)
			known := name == flagconfig.EnvName(envPrefix, "config") || name == "TIER0_AGENT_DATA" // the agent's
			fs.VisitAll(func(f *pflag.Flag) { known = known || flagconfig.EnvName(envPrefix, f.Name) == name })
			if !known {
				t.Errorf("deploy sets %s, which names no flag of tier0 server", name)
			}
		}
	}
}

// configMapFiles returns the data of the ConfigMap called name in a
// multi-document manifest.
func configMapFiles(t *testing.T, manifest []byte, name string) map[string]string {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var doc struct {
			Kind     string                `yaml:"kind"`
			Metadata struct{ Name string } `yaml:"metadata"`
			Data     map[string]string     `yaml:"data"`
		}
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			t.Fatalf("no ConfigMap %s", name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "ConfigMap" && doc.Metadata.Name == name {
			return doc.Data
		}
	}
}
