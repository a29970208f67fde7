package main

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/tier0-ca/tier0/internal/hsmtest"
)

const testEpoch = 1767225600 // 2026-01-01T00:00:00Z

// buildOnce builds every image into a fresh directory (as `make image` does).
func buildInto(t *testing.T, out string) {
	t.Helper()
	o := options{src: "../..", out: out, tag: "test", pkcs11: true, caCerts: "/etc/ssl/certs/ca-certificates.crt", epoch: testEpoch}
	// The first build compiles every dependency without cgo: minutes on a
	// loaded 2-core machine. Bound it by the test binary's deadline (leaving
	// time to report), not by a fixed guess.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	if dl, ok := t.Deadline(); ok {
		cancel()
		ctx, cancel = context.WithDeadline(context.Background(), dl.Add(-30*time.Second))
	}
	defer cancel()
	imgs, err := build(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(out, imgs); err != nil {
		t.Fatal(err)
	}
}

// images reads the OCI layout: ref name -> image.
func images(t *testing.T, dir string) map[string]v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		out[d.Annotations["org.opencontainers.image.ref.name"]] = img
	}
	return out
}

// TestImages builds the images twice (same digests: reproducible), then
// unpacks each and checks its config and files and runs its entrypoint.
func TestImages(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	buildInto(t, first)
	buildInto(t, second)
	a, b := images(t, first), images(t, second)
	want := []string{"tier0-agent:test", "tier0:test", "tier0:test-pkcs11"}
	var got []string
	for ref := range a {
		got = append(got, ref)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("images %v, want %v", got, want)
	}
	for _, ref := range want {
		da, _ := a[ref].Digest()
		db, err := b[ref].Digest()
		if err != nil {
			t.Fatal(err)
		}
		if da != db {
			t.Errorf("%s: two builds of the same source differ: %s and %s", ref, da, db)
		}
		if _, err := os.Stat(filepath.Join(first, strings.ReplaceAll(ref, ":", "-")+".tar")); err != nil {
			t.Errorf("%s: no docker tarball: %v", ref, err)
		}
	}
	hsmURI := hsmtest.ECKeyURI(t)
	for _, tc := range []struct {
		ref, bin, user, home string
		entrypoint, cmd      []string
		cgo                  bool
	}{
		{"tier0:test", "tier0", "tier0", "/var/lib/tier0", []string{"/usr/local/bin/tier0"}, []string{"server", "--config", "/etc/tier0/tier0.yaml"}, false},
		{"tier0-agent:test", "tier0-agent", "tier0-agent", "/var/lib/tier0-agent", []string{"/usr/local/bin/tier0-agent"}, []string{"run", "--socket", "/run/tier0-agent/agent.sock"}, false},
		{"tier0:test-pkcs11", "tier0", "tier0", "/var/lib/tier0", []string{"/usr/local/bin/tier0"}, []string{"server", "--config", "/etc/tier0/tier0.yaml"}, true},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			img := a[tc.ref]
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if c.User != "10001:10001" {
				t.Errorf("user %q, want the numeric non-root 10001:10001", c.User)
			}
			if !slices.Equal(c.Entrypoint, tc.entrypoint) || !slices.Equal(c.Cmd, tc.cmd) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", c.Entrypoint, c.Cmd, tc.entrypoint, tc.cmd)
			}
			if c.WorkingDir != tc.home {
				t.Errorf("working dir %q, want %q", c.WorkingDir, tc.home)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e, "TIER0_") && e != "TIER0_AGENT_DATA=/var/lib/tier0-agent" {
					t.Errorf("env %q would override the server's config file", e)
				}
			}
			created := time.Unix(testEpoch, 0).UTC()
			if !cf.Created.Equal(created) || c.Labels["org.opencontainers.image.created"] != "2026-01-01T00:00:00Z" {
				t.Errorf("created %v / label %q, want SOURCE_DATE_EPOCH %v", cf.Created, c.Labels["org.opencontainers.image.created"], created)
			}
			if c.Labels["org.opencontainers.image.title"] != tc.bin || c.Labels["org.opencontainers.image.version"] != "test" {
				t.Errorf("labels %v", c.Labels)
			}
			root, hdrs := unpack(t, img)
			checkFiles(t, hdrs, tc.bin, tc.home, tc.cgo)
			passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
			if err != nil || !strings.Contains(string(passwd), "\n"+tc.user+":x:10001:10001:") {
				t.Errorf("/etc/passwd has no %s with uid 10001: %q %v", tc.user, passwd, err)
			}
			bin := filepath.Join(root, "usr/local/bin", tc.bin)
			run := func(args ...string) (string, error) {
				cmd := exec.Command(bin, args...)
				if tc.cgo { // with the image's own loader and C library
					lib := filepath.Join(root, strings.TrimPrefix(interpOf(t, bin), "/"))
					cmd = exec.Command(lib, append([]string{"--library-path", libPath(root), bin}, args...)...)
				}
				cmd.Env = []string{"PATH=/nonexistent", "HOME=" + t.TempDir(), "SOFTHSM2_CONF=" + os.Getenv("SOFTHSM2_CONF")}
				out, err := cmd.CombinedOutput()
				return string(out), err
			}
			out, err := run("--version")
			wantBuild := "static, no pkcs11)"
			if tc.cgo {
				wantBuild = ", pkcs11)"
			}
			if err != nil || !strings.HasPrefix(out, tc.bin+" ") || !strings.Contains(out, wantBuild) {
				t.Errorf("%s --version: %v: %q, want %q... %q", tc.bin, err, out, tc.bin, wantBuild)
			}
			out, err = run("--help")
			if err != nil || !strings.Contains(out, "Available Commands") || !strings.Contains(out, tc.cmd[0]) {
				t.Errorf("%s --help: %v: %q", tc.bin, err, out)
			}
			if tc.bin != "tier0" {
				return
			}
			out, err = run("signer", "test", "--uri", hsmURI)
			switch {
			case tc.cgo && err != nil:
				t.Errorf("the pkcs11 image cannot sign with SoftHSM2: %v: %s", err, out)
			case !tc.cgo && (err == nil || !strings.Contains(out, "built without cgo and cannot load PKCS#11 modules")):
				t.Errorf("the static image on a pkcs11: URI: %v: %q, want the no-cgo refusal", err, out)
			}
		})
	}
}

// libPath: the image's library directories first, then the host's (for
// the SoftHSM2 module's own dependencies, as an HSM vendor's module
// would bring its own).
func libPath(root string) string {
	var dirs []string
	for _, d := range libDirs {
		if st, err := os.Stat(filepath.Join(root, d)); err == nil && st.IsDir() {
			dirs = append(dirs, filepath.Join(root, d))
		}
	}
	return strings.Join(append(dirs, libDirs...), ":")
}

func interpOf(t *testing.T, bin string) string {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := interpreter(f)
	if err != nil || p == "" {
		t.Fatalf("%s: no interpreter: %v", bin, err)
	}
	return p
}

// checkFiles: exactly the expected files (no shell, no package manager),
// /tmp 1777, the home directory 0700 and owned by 10001, a static binary
// unless cgo, whose every library is then in the image.
func checkFiles(t *testing.T, hdrs map[string]*tar.Header, bin, home string, cgo bool) {
	t.Helper()
	allowed := map[string]bool{"etc/passwd": true, "etc/group": true, "etc/nsswitch.conf": true,
		"etc/ssl/certs/ca-certificates.crt": true, "usr/local/bin/" + bin: true, "etc/tier0/tier0.yaml": bin == "tier0"}
	for name, h := range hdrs {
		if h.Typeflag == tar.TypeDir {
			continue
		}
		isLib := cgo && (strings.HasPrefix(name, "lib") || strings.HasPrefix(name, "usr/lib"))
		if !allowed[name] && !isLib {
			t.Errorf("unexpected file %s in the image", name)
		}
	}
	for _, sh := range []string{"bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"} {
		if hdrs[sh] != nil {
			t.Errorf("the image has a shell: %s", sh)
		}
	}
	if h := hdrs["tmp"]; h == nil || h.Mode&0o7777 != 0o1777 {
		t.Errorf("/tmp: %+v, want mode 1777", h)
	}
	h := hdrs[strings.TrimPrefix(home, "/")]
	if h == nil || h.Mode&0o777 != 0o700 || h.Uid != 10001 || h.Gid != 10001 {
		t.Errorf("%s: %+v, want 0700 owned by 10001:10001", home, h)
	}
	if bh := hdrs["usr/local/bin/"+bin]; bh == nil || bh.Mode&0o777 != 0o755 || bh.Uid != 0 {
		t.Errorf("binary header %+v, want 0755 owned by root", bh)
	}
}

// unpack extracts the flattened file system of img into a directory and
// returns it with the tar headers by name (no leading or trailing "/").
func unpack(t *testing.T, img v1.Image) (string, map[string]*tar.Header) {
	t.Helper()
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	hdrs := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[strings.TrimSuffix(h.Name, "/")] = h
		p := filepath.Join(root, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("unexpected entry %s (type %c)", h.Name, h.Typeflag)
		}
	}
	return root, hdrs
}
