package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
// example and the Kubernetes ConfigMap) are valid for `tier0 server`: every
// key a flag, every value accepted by it; and every TIER0_ variable the
// manifests set names a flag, so none is silently ignored.
func TestDeployConfigs(t *testing.T) {
	manifest, err := os.ReadFile("../../deploy/k8s/tier0.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cm := configMapFile(t, manifest, "tier0", "tier0.yaml")
	k8sCfg := filepath.Join(t.TempDir(), "tier0.yaml")
	if err := os.WriteFile(k8sCfg, []byte(cm), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := func(string) (string, bool) { return "", false }
	for _, path := range []string{"../../deploy/systemd/tier0.yaml", k8sCfg} {
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
			known := name == flagconfig.EnvName(envPrefix, "config")
			fs.VisitAll(func(f *pflag.Flag) { known = known || flagconfig.EnvName(envPrefix, f.Name) == name })
			if !known {
				t.Errorf("deploy sets %s, which names no flag of tier0 server", name)
			}
		}
	}
}

// configMapFile returns data[key] of the ConfigMap called name in a
// multi-document manifest.
func configMapFile(t *testing.T, manifest []byte, name, key string) string {
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
			t.Fatalf("no ConfigMap %s with %s", name, key)
		}
		if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "ConfigMap" && doc.Metadata.Name == name && doc.Data[key] != "" {
			return doc.Data[key]
		}
	}
}
