package hsmtest

import (
	_ "embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// faultSource is a PKCS#11 module that forwards to a real one and fails
// while a control file exists (see the comment at its top).
//
//go:embed testdata/faultp11.c
var faultSource []byte

// Environment of the fault module: the real module it forwards to and its
// control file.
const (
	FaultModuleEnv  = "TIER0_FAULTP11_MODULE"
	FaultControlEnv = "TIER0_FAULTP11_CONTROL"
)

// FaultModule is a PKCS#11 module whose device can be taken away and given
// back: a wrapper (built with gcc) around a private copy of the SoftHSM2
// module, so that it is a separate instance from any SoftHSM2 loaded
// directly in the same process.
type FaultModule struct {
	Path    string // the wrapper: use it as module-path
	Control string // the device is away while this file exists
}

var (
	faultOnce sync.Once
	faultMod  *FaultModule
	faultErr  error
)

// BuildFaultModule builds the fault module once per process and points
// the environment (inherited by the server processes tests start) at the
// real module and the control file. It fails the test (skips outside
// `make test`) when the SoftHSM2 module is not provided, and fails it when
// gcc or the PKCS#11 headers are missing.
func BuildFaultModule(tb testing.TB) *FaultModule {
	tb.Helper()
	real := testenv.Get(tb, testenv.PKCS11Module)
	faultOnce.Do(func() { faultMod, faultErr = buildFault(real) })
	if faultErr != nil {
		tb.Fatalf("hsmtest: fault module: %v", faultErr)
	}
	tb.Setenv(FaultModuleEnv, filepath.Join(filepath.Dir(faultMod.Path), "real-module.so"))
	tb.Setenv(FaultControlEnv, faultMod.Control)
	return faultMod
}

func buildFault(real string) (*FaultModule, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return nil, fmt.Errorf("gcc is needed to build the test PKCS#11 module: %w", err)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/miekg/pkcs11").Output()
	if err != nil {
		return nil, fmt.Errorf("find the PKCS#11 headers (go list -m github.com/miekg/pkcs11): %w", err)
	}
	headers := strings.TrimSpace(string(out))
	dir, err := os.MkdirTemp("", "tier0-faultp11-") // lives as long as the test binary
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "faultp11.c")
	if err := os.WriteFile(src, faultSource, 0o600); err != nil {
		return nil, err
	}
	if err := copyFile(real, filepath.Join(dir, "real-module.so")); err != nil {
		return nil, err
	}
	m := &FaultModule{Path: filepath.Join(dir, "faultp11.so"), Control: filepath.Join(dir, "device-away")}
	cmd := exec.Command(gcc, "-Wall", "-Werror", "-shared", "-fPIC", "-O2", "-I", headers, "-o", m.Path, src, "-ldl", "-lpthread")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gcc: %w\n%s", err, out)
	}
	return m, nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// URI returns a pkcs11: URI for the key of a pkcs11: URI on the SoftHSM2
// module (e.g. ECKeyURI's) through the fault module instead.
func (m *FaultModule) URI(tb testing.TB, softhsmURI, softhsmModule string) string {
	tb.Helper()
	if !strings.Contains(softhsmURI, "module-path="+softhsmModule) {
		tb.Fatalf("hsmtest: %s does not use module %s", softhsmURI, softhsmModule)
	}
	return strings.Replace(softhsmURI, "module-path="+softhsmModule, "module-path="+m.Path, 1)
}

// Fail takes the device away: every call fails with CKR_DEVICE_REMOVED
// ("removed") or CKR_GENERAL_ERROR ("general"); with "sticky" the module
// keeps failing after Restore until it is re-initialised.
func (m *FaultModule) Fail(tb testing.TB, mode string) {
	tb.Helper()
	if err := os.WriteFile(m.Control, []byte(mode+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.Remove(m.Control) })
}

// Restore gives the device back.
func (m *FaultModule) Restore(tb testing.TB) {
	tb.Helper()
	if err := os.Remove(m.Control); err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
}
