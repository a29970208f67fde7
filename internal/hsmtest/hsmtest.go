// Package hsmtest makes a SoftHSM2 token with a P-256 key for tests outside
// signer/ (end-to-end tests and benchmarks of the CA with a PKCS#11 key).
//
// SoftHSM reads SOFTHSM2_CONF when the module is initialized, once per
// process, so Token sets it for the whole test binary (and for the server
// processes it starts, which inherit the environment) and makes the token
// once.
package hsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tier0-ca/tier0/internal/testenv"
)

var (
	once sync.Once
	uri  string
	err  error
)

// ECKeyURI returns a pkcs11: URI of a P-256 key on a fresh token, skipping
// the test (failing under `make test`) when SoftHSM2 is not provided.
func ECKeyURI(tb testing.TB) string {
	tb.Helper()
	module := testenv.Get(tb, testenv.PKCS11Module)
	util := testenv.Get(tb, testenv.SoftHSMUtil)
	tool := testenv.Get(tb, testenv.PKCS11Tool)
	once.Do(func() { uri, err = setup(module, util, tool) })
	if err != nil {
		tb.Fatalf("hsmtest: %v", err)
	}
	return uri
}

func setup(module, util, tool string) (string, error) {
	dir, err := os.MkdirTemp("", "tier0-hsmtest-") // lives as long as the test binary
	if err != nil {
		return "", err
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return "", err
	}
	pinFile := filepath.Join(dir, "pin")
	if err := os.WriteFile(pinFile, []byte("1234\n"), 0o600); err != nil {
		return "", err
	}
	if out, err := exec.Command(util, "--init-token", "--free", "--label", "tier0-ca", "--pin", "1234", "--so-pin", "5678").CombinedOutput(); err != nil {
		return "", fmt.Errorf("softhsm2-util: %w: %s", err, out)
	}
	if out, err := exec.Command(tool, "--module", module, "--token-label", "tier0-ca", "--login", "--pin", "1234",
		"--keypairgen", "--key-type", "EC:prime256v1", "--label", "ca-key", "--id", "01").CombinedOutput(); err != nil {
		return "", fmt.Errorf("pkcs11-tool: %w: %s", err, out)
	}
	return fmt.Sprintf("pkcs11:token=tier0-ca;object=ca-key;id=%%01?module-path=%s&pin-source=file:%s", module, pinFile), nil
}
