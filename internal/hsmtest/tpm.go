package hsmtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/testenv"
)

// TPM2Module names the tpm2-pkcs11 module (libtpm2_pkcs11.so) for the TPM
// token tests; deploy/dev/testenv.sh installs it with swtpm, tpm2-abrmd and
// tpm2_ptool.
const TPM2Module = "TEST_TPM2_PKCS11_MODULE"

// TPM is a tpm2-pkcs11 token on a software TPM (swtpm) reached through the
// TPM access broker (tpm2-abrmd, on a private D-Bus session bus): the stack
// of a real TPM-backed CA key, whose broker can be stopped and started.
type TPM struct {
	URI    string // pkcs11: URI of the P-256 key "ca-key" on token "tier0"
	tb     testing.TB
	dir    string
	tcti   string // swtpm:host=127.0.0.1,port=P
	broker *exec.Cmd
}

// tpmUsed: TPMToken was called in this process.
var tpmUsed atomic.Bool

// TPMToken starts swtpm, a session bus and tpm2-abrmd, makes the token
// and its key, and points this process's environment (read by the module
// at C_Initialize, inherited by servers it starts) at them; all of it ends
// with the test. Once per test process: tpm2-pkcs11 keeps process-wide
// state (its D-Bus connection) that a second stack cannot reuse (so no
// -count=2). Fails (skips outside `make test`) without
// TEST_TPM2_PKCS11_MODULE.
func TPMToken(tb testing.TB) *TPM {
	tb.Helper()
	module := testenv.Get(tb, TPM2Module)
	if tpmUsed.Swap(true) {
		tb.Fatal("hsmtest: TPMToken once per test process (tpm2-pkcs11 keeps its D-Bus connection across C_Finalize); run with -count=1")
	}
	for _, tool := range []string{"swtpm", "tpm2-abrmd", "dbus-daemon", "tpm2_ptool"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("hsmtest: %s is needed for the TPM token (deploy/dev/testenv.sh installs it): %v", tool, err)
		}
	}
	t := &TPM{tb: tb, dir: tb.TempDir()}
	port := tpmPorts(tb)
	t.tcti = fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)
	state, store := filepath.Join(t.dir, "state"), filepath.Join(t.dir, "store")
	for _, d := range []string{state, store} {
		if err := os.Mkdir(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	t.daemon("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state,
		"--server", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port),
		"--ctrl", "type=tcp,bindaddr=127.0.0.1,port="+strconv.Itoa(port+1),
		"--flags", "not-need-init,startup-clear")
	t.waitFor("swtpm", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	bus := "unix:path=" + filepath.Join(t.dir, "bus")
	t.daemon("dbus-daemon", "--session", "--nofork", "--address="+bus)
	tb.Setenv("DBUS_SESSION_BUS_ADDRESS", bus)
	t.waitFor("dbus-daemon", func() bool { return t.busHas("org.freedesktop.DBus") })
	tb.Setenv("TPM2_PKCS11_TCTI", "tabrmd:bus_type=session")
	tb.Setenv("TPM2TOOLS_TCTI", "tabrmd:bus_type=session")
	tb.Setenv("TPM2_PKCS11_STORE", store)
	tb.Setenv("TPM2_PKCS11_LOG_LEVEL", "0")
	tb.Setenv("TSS2_LOG", "all+NONE")
	t.StartBroker()
	t.ptool("init", "--path="+store)
	t.ptool("addtoken", "--pid=1", "--label=tier0", "--sopin=5678", "--userpin=1234", "--path="+store)
	t.ptool("addkey", "--label=tier0", "--key-label=ca-key", "--userpin=1234", "--algorithm=ecc256", "--path="+store)
	pin := filepath.Join(t.dir, "pin")
	if err := os.WriteFile(pin, []byte("1234\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	t.URI = fmt.Sprintf("pkcs11:token=tier0;object=ca-key?module-path=%s&pin-source=file:%s", module, pin)
	return t
}

// tpmPorts returns a free port P with P+1 free too (swtpm's TCTI expects
// the control channel on the next port).
func tpmPorts(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		_, p, _ := net.SplitHostPort(testenv.FreeAddr(tb))
		port, _ := strconv.Atoi(p)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1)); err == nil {
			l.Close()
			return port
		}
	}
	tb.Fatal("hsmtest: no two adjacent free ports for swtpm")
	return 0
}

// daemon starts a long-running process, killed at the end of the test.
func (t *TPM) daemon(name string, args ...string) *exec.Cmd {
	t.tb.Helper()
	cmd := exec.Command(name, args...)
	log, err := os.Create(filepath.Join(t.dir, filepath.Base(name)+".log"))
	if err != nil {
		t.tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.tb.Fatalf("hsmtest: start %s: %v", name, err)
	}
	t.tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); log.Close() })
	return cmd
}

// ptool runs tpm2_ptool, retrying while the broker is not yet on the bus.
func (t *TPM) ptool(args ...string) {
	t.tb.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err = exec.CommandContext(ctx, "tpm2_ptool", args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "tabrmd") {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling for the broker, not synchronisation
	}
	if err != nil {
		t.tb.Fatalf("hsmtest: tpm2_ptool %s: %v\n%s", args[0], err, out)
	}
}

// StopBroker kills tpm2-abrmd: every connection to the TPM is gone, as
// when the broker service is stopped or crashes.
func (t *TPM) StopBroker() {
	t.tb.Helper()
	if t.broker == nil {
		return
	}
	_ = t.broker.Process.Kill()
	_ = t.broker.Wait()
	t.broker = nil
}

// StartBroker starts tpm2-abrmd and waits until it answers on the bus.
func (t *TPM) StartBroker() {
	t.tb.Helper()
	args := []string{"--session", "--tcti=" + t.tcti}
	if os.Getuid() == 0 {
		args = append(args, "--allow-root")
	}
	t.broker = t.daemon("tpm2-abrmd", args...)
	t.waitFor("tpm2-abrmd on the session bus", func() bool { return t.busHas("com.intel.tss2.Tabrmd") })
}

// busHas reports whether name has an owner on the session bus.
func (t *TPM) busHas(name string) bool {
	out, err := exec.Command("dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
		"org.freedesktop.DBus.NameHasOwner", "string:"+name).CombinedOutput()
	return err == nil && strings.Contains(string(out), "boolean true")
}

// waitFor polls cond for up to 30s, failing with the daemons' logs.
func (t *TPM) waitFor(what string, cond func() bool) {
	t.tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			var logs strings.Builder
			paths, _ := filepath.Glob(filepath.Join(t.dir, "*.log"))
			for _, p := range paths {
				b, _ := os.ReadFile(p)
				fmt.Fprintf(&logs, "--- %s:\n%s\n", filepath.Base(p), b)
			}
			t.tb.Fatalf("hsmtest: %s not ready within 30s\n%s", what, logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for a daemon, not synchronisation
	}
}
