// Package softhsmtest sets up a SoftHSM2 token for the signer tests.
//
// SoftHSM reads SOFTHSM2_CONF at C_Initialize and a PKCS#11 module is
// initialized once per process, so the token is created once per test
// binary, from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(softhsmtest.Main(m)) }
//
// and tests get it with softhsmtest.Get(t), which skips (or, under
// `make test`, fails) when the SoftHSM tools are not provided.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// Token describes the test token.
type Token struct {
	Dir     string // temp dir holding softhsm2.conf, tokens/ and the PIN file
	Module  string // TEST_PKCS11_MODULE
	Label   string // "tier0-test"
	PIN     string // "1234"
	PINFile string // file holding PIN, mode 0600
}

// Keys generated on the token: label and CKA_ID.
const (
	ECLabel  = "ec-key"   // P-256, id 01
	RSALabel = "rsa-key"  // RSA-2048, id 02
	AESLabel = "aes-key"  // AES-256 secret key, id 03
	P521     = "p521-key" // P-521, id 04 (not supported by the signer)
	P384     = "p384-key" // P-384, id 05
)

var (
	token    *Token
	setupErr error
)

// Main creates the token when the SoftHSM tools are provided, runs the
// tests and removes the token.
func Main(m *testing.M) int {
	module, util, tool := os.Getenv(testenv.PKCS11Module), os.Getenv(testenv.SoftHSMUtil), os.Getenv(testenv.PKCS11Tool)
	if module != "" && util != "" && tool != "" {
		dir, err := os.MkdirTemp("", "tier0-softhsm-")
		if err != nil {
			setupErr = err
		} else {
			defer os.RemoveAll(dir)
			token, setupErr = setup(dir, module, util, tool)
		}
	}
	return m.Run()
}

// Get returns the token, skipping the test when the SoftHSM tools are not
// provided (failing under `make test`), and failing when setup failed.
func Get(t testing.TB) *Token {
	t.Helper()
	testenv.Get(t, testenv.PKCS11Module)
	testenv.Get(t, testenv.SoftHSMUtil)
	testenv.Get(t, testenv.PKCS11Tool)
	if setupErr != nil {
		t.Fatalf("softhsmtest: token setup failed: %v", setupErr)
	}
	if token == nil {
		t.Fatal("softhsmtest: no token: call softhsmtest.Main from TestMain")
	}
	return token
}

// URI returns a pkcs11: URI for a key on the token with the given path
// attributes (e.g. "object=ec-key;id=%01").
func (tk *Token) URI(pathAttrs string) string {
	return fmt.Sprintf("pkcs11:token=%s;%s?module-path=%s&pin-source=file:%s", tk.Label, pathAttrs, tk.Module, tk.PINFile)
}

func setup(dir, module, util, tool string) (*Token, error) {
	conf := filepath.Join(dir, "softhsm2.conf")
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		return nil, err
	}
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	tk := &Token{Dir: dir, Module: module, Label: "tier0-test", PIN: "1234", PINFile: filepath.Join(dir, "pin")}
	if err := os.WriteFile(tk.PINFile, []byte(tk.PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := run(util, "--init-token", "--free", "--label", tk.Label, "--pin", tk.PIN, "--so-pin", "5678"); err != nil {
		return nil, err
	}
	p11 := []string{"--module", module, "--token-label", tk.Label, "--login", "--pin", tk.PIN}
	for _, k := range [][]string{
		{"--keypairgen", "--key-type", "EC:prime256v1", "--label", ECLabel, "--id", "01"},
		{"--keypairgen", "--key-type", "rsa:2048", "--label", RSALabel, "--id", "02"},
		{"--keygen", "--key-type", "AES:32", "--label", AESLabel, "--id", "03"},
		{"--keypairgen", "--key-type", "EC:secp521r1", "--label", P521, "--id", "04"},
		{"--keypairgen", "--key-type", "EC:secp384r1", "--label", P384, "--id", "05"},
	} {
		if err := run(tool, append(p11, k...)...); err != nil {
			return nil, err
		}
	}
	return tk, nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", filepath.Base(name), args[:2], err, out)
	}
	return nil
}
