package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/testenv"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(testenv.RunWithBinaries(m, &binDir, "github.com/tier0-ca/tier0/cmd/tier0", "github.com/tier0-ca/tier0/cmd/tier0-dev"))
}

// TestFakeKMSWithTier0: each fake serves a key that the production binary
// (real AWS and GCP SDK clients) signs with, as the README shows.
func TestFakeKMSWithTier0(t *testing.T) {
	for _, tc := range []struct{ cmd, spec, scheme string }{
		{"kms-aws", "ECC_NIST_P256", "awskms:"},
		{"kms-gcp", "EC_SIGN_P256_SHA256", "gcpkms:"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			dev := exec.Command(filepath.Join(binDir, "tier0-dev"), tc.cmd, "--create-key", tc.spec)
			stdout, err := dev.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stderr := &testenv.Buffer{}
			dev.Stderr = stderr
			if err := dev.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = dev.Process.Kill(); _ = dev.Wait() })
			lines := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				if sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			var uri string
			select {
			case uri = <-lines:
			case <-time.After(30 * time.Second):
				t.Fatalf("tier0-dev %s printed no key URI within 30s: %s", tc.cmd, stderr.String())
			}
			if !strings.HasPrefix(uri, tc.scheme) {
				t.Fatalf("key URI %q (stderr %s)", uri, stderr.String())
			}
			test := exec.Command(filepath.Join(binDir, "tier0"), "signer", "test", "--uri", uri)
			test.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=dev", "AWS_SECRET_ACCESS_KEY=dev")
			out, err := test.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "signed and verified") {
				t.Fatalf("tier0 signer test --uri %s: %v\n%s", uri, err, out)
			}
		})
	}
}

// TestLoopbackOnly: the fakes have no auth; anything but loopback is refused.
func TestLoopbackOnly(t *testing.T) {
	out, err := exec.Command(filepath.Join(binDir, "tier0-dev"), "kms-aws", "--listen", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "loopback only") {
		t.Fatalf("err %v, output %s", err, out)
	}
}
