package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	kmspb "cloud.google.com/go/kms/apiv1/kmspb"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/hsmtest"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
	"github.com/tier0-ca/tier0/signer/kmsfake/gcpfake"
)

// mintAnswer is what one MintX509SVIDs call for webID answered.
type mintAnswer struct {
	code   codes.Code
	msg    string
	hint   time.Duration
	hinted bool
}

// mintRaw sends one MintX509SVIDs call of n items for webID (one attempt)
// and returns its code, message and retry-after hint (of the first item if
// the call succeeded). The client holds its next call to a hint.
func mintRaw(t *testing.T, c *client.Client, n int) mintAnswer {
	t.Helper()
	csr, _, err := client.NewCSR(spiffeid.RequireFromString(webID))
	if err != nil {
		t.Fatal(err)
	}
	items := make([]*tier0v1.MintItem, n)
	for i := range items {
		items[i] = &tier0v1.MintItem{Csr: csr}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var tr metadata.MD
	resp, err := c.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: items}, grpc.Trailer(&tr))
	a := mintAnswer{}
	a.hint, a.hinted = client.RetryAfter(tr)
	switch {
	case err != nil:
		st := status.Convert(err)
		a.code, a.msg = st.Code(), st.Message()
	case resp.GetResults()[0].GetError() != nil:
		e := resp.GetResults()[0].GetError()
		a.code, a.msg = codes.Code(e.GetCode()), e.GetMessage()
	}
	return a
}

// waitCircuitOpen mints until the node answers that its CA key's breaker
// is open, checking every answer on the way: Unavailable with a retry-after
// hint and a message that names no key, account, endpoint or HSM code.
func waitCircuitOpen(t *testing.T, c *client.Client, backend string, secrets ...string) mintAnswer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := mintRaw(t, c, 1)
		if a.code != codes.Unavailable || !a.hinted || a.hint <= 0 || a.hint > 5*time.Second ||
			!strings.HasPrefix(a.msg, "signer: CA key unavailable ("+backend+": ") {
			t.Fatalf("mint with the CA key down: %+v, want Unavailable with a retry-after hint and the safe message", a)
		}
		for _, s := range secrets {
			if strings.Contains(a.msg, s) {
				t.Fatalf("client message carries %q: %s", s, a.msg)
			}
		}
		if strings.Contains(a.msg, "circuit_open") {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker did not open within 30s: %+v", a)
		}
	}
}

// gauge returns the value of the first series of name whose labels
// contain backend="backend", or "" if there is none.
func gauge(t *testing.T, srv *proc, name, backend string) string {
	t.Helper()
	for l := range strings.SplitSeq(metric(t, srv, name+"{"), "\n") {
		if strings.Contains(l, `backend="`+backend+`"`) {
			return l[strings.LastIndex(l, " ")+1:]
		}
	}
	return ""
}

// readyz returns srv's /readyz status code and body.
func readyz(t *testing.T, srv *proc) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + srv.info.HTTP + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// checkNotReady checks that srv's /readyz says its CA key cannot sign,
// naming the backend and not the key.
func checkNotReady(t *testing.T, srv *proc, backend string, secrets ...string) {
	t.Helper()
	code, body := readyz(t, srv)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "signer: signer unavailable: the "+backend+" CA key cannot sign since ") {
		t.Fatalf("/readyz with the CA key down: %d %q, want 503 naming the signer", code, body)
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Fatalf("/readyz carries %q: %s", s, body)
		}
	}
}

// warnLines returns the WARN and ERROR lines of srv's log after offset.
func warnLines(srv *proc, offset int) []string {
	var out []string
	for l := range strings.SplitSeq(srv.log.String()[offset:], "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// TestPKCS11DeviceOutage: a real server in direct mode on a PKCS#11 token
// (SoftHSM2 behind the fault-injecting wrapper module) whose device goes
// away and, when it returns, keeps failing with CKR_GENERAL_ERROR until
// the module is re-initialised (what tpm2-pkcs11 does when its TPM broker
// restarts). Items answer Unavailable with a retry-after hint and a safe
// message, the server logs a handful of lines (not one per item), the
// metrics and /readyz ("signer unavailable") show it, and issuance
// recovers by itself.
func TestPKCS11DeviceOutage(t *testing.T) {
	fm := hsmtest.BuildFaultModule(t)
	uri := fm.URI(t, hsmtest.ECKeyURI(t), os.Getenv(testenv.PKCS11Module))
	srv := startKeyServer(t, t.TempDir(), "--signer", uri, "--signing-mode", "direct")
	svid := agentSVID(t, srv, "host-1", webID)
	c := clientAs(t, srv, svid)
	must(mintWeb(t, srv, c))
	if got := gauge(t, srv, "tier0_signer_up", "pkcs11"); got != "1" {
		t.Fatalf("tier0_signer_up = %q, want 1", got)
	}
	if m := metric(t, srv, "tier0_signer_errors_total"); !strings.Contains(m, `tier0_signer_errors_total{backend="pkcs11",kind="circuit_open"} 0`) {
		t.Fatalf("tier0_signer_errors_total not registered at zero:\n%s", m)
	}
	logStart := len(srv.log.String())

	fm.Fail(t, "general sticky")
	waitCircuitOpen(t, c, "pkcs11", "CKR_", "tier0-ca", "ca-key", "0x")
	// A renewal storm: agents whose clients hold no hint yet (a client
	// holds its next call to the last hint) each send a full batch.
	for range 10 {
		if a := mintRaw(t, clientAs(t, srv, svid), 100); a.code != codes.Unavailable || !a.hinted {
			t.Fatalf("mint with the breaker open: %+v", a)
		}
	}
	if got := gauge(t, srv, "tier0_signer_circuit_open", "pkcs11"); got != "1" {
		t.Fatalf("tier0_signer_circuit_open = %q, want 1", got)
	}
	if got := gauge(t, srv, "tier0_signer_up", "pkcs11"); got != "0" {
		t.Fatalf("tier0_signer_up = %q, want 0", got)
	}
	checkNotReady(t, srv, "pkcs11", "tier0-ca", "ca-key", "CKR_")

	fm.Restore(t)
	// The probe re-initialises the module and the key is up again without
	// any request.
	pollUntil(t, 30*time.Second, func() bool { return gauge(t, srv, "tier0_signer_up", "pkcs11") == "1" })
	if code, body := readyz(t, srv); code != http.StatusOK {
		t.Fatalf("/readyz after recovery: %d %s", code, body)
	}
	must(mintWeb(t, srv, c))
	lines := warnLines(srv, logStart)
	out := strings.Join(lines, "\n")
	if len(lines) > 8 || strings.Contains(out, "level=ERROR") {
		t.Fatalf("%d WARN/ERROR lines for an outage of 1,000+ items, want a handful and no ERROR:\n%s", len(lines), out)
	}
	if !strings.Contains(out, "CA key unavailable; failing signs fast") || !strings.Contains(srv.log.String()[logStart:], "CA key available again") {
		t.Fatalf("log lacks the state changes:\n%s", srv.log.String()[logStart:])
	}
}

// kmsFake is a KMS fake in this process that can disappear and come back
// on the same port with the same keys.
type kmsFake struct {
	addr  string
	start func(string) (string, error)
	stop  func()
}

func (k *kmsFake) restart(t *testing.T) {
	t.Helper()
	if _, err := k.start(k.addr); err != nil {
		t.Fatal(err)
	}
}

// awsClientEnv gives this process, and the server and CLI processes it
// starts from now on, the environment the AWS SDK needs for the fake.
func awsClientEnv(t *testing.T) {
	for k, v := range awsfake.ClientEnv() {
		t.Setenv(k, v)
	}
}

// newKMSFake starts a fake of backend with a key of spec (AWS KeySpec or
// Cloud KMS algorithm name) and returns it with the key's URI.
func newKMSFake(t *testing.T, backend, spec string) (*kmsFake, string) {
	t.Helper()
	switch backend {
	case "awskms":
		awsClientEnv(t)
		fake := awsfake.New()
		addr, err := fake.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fake.Stop)
		arn, err := fake.CreateKey(spec)
		if err != nil {
			t.Fatal(err)
		}
		return &kmsFake{addr: addr, start: fake.Start, stop: fake.Stop}, fmt.Sprintf("awskms:///%s?region=us-east-1&endpoint=http://%s", arn, addr)
	case "gcpkms":
		fake := gcpfake.New()
		addr, err := fake.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(fake.Stop)
		name, err := fake.CreateKey("projects/p/locations/global/keyRings/r/cryptoKeys/ca", kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm(kmspb.CryptoKeyVersion_CryptoKeyVersionAlgorithm_value[spec]))
		if err != nil {
			t.Fatal(err)
		}
		return &kmsFake{addr: addr, start: fake.Start, stop: fake.Stop}, fmt.Sprintf("gcpkms:%s?endpoint=%s&insecure=1", name, addr)
	}
	t.Fatalf("unknown backend %s", backend)
	return nil, ""
}

// TestKMSEndpointOutage: direct mode on a KMS whose endpoint disappears
// (listener and connections closed) and comes back on the same port.
// Agents get Unavailable with a retry-after hint and a message without the
// key ARN, account or endpoint; the breaker's state is in the metrics; the
// node issues again soon after the endpoint returns (the gap is logged;
// docs/BENCHMARKS.md has the measured numbers).
func TestKMSEndpointOutage(t *testing.T) {
	for backend, spec := range map[string]string{"awskms": "ECC_NIST_P256", "gcpkms": "EC_SIGN_P256_SHA256"} {
		t.Run(backend, func(t *testing.T) {
			kms, uri := newKMSFake(t, backend, spec)
			srv := startKeyServer(t, t.TempDir(), "--signer", uri, "--signing-mode", "direct", "--signer-timeout", "2s")
			c := agentClient(t, srv, "host-1", webID)
			must(mintWeb(t, srv, c))
			logStart := len(srv.log.String())

			kms.stop()
			waitCircuitOpen(t, c, backend, "111122223333", "arn:", "projects/p", kms.addr, "http://")
			if got := gauge(t, srv, "tier0_signer_circuit_open", backend); got != "1" {
				t.Fatalf("tier0_signer_circuit_open = %q, want 1", got)
			}
			checkNotReady(t, srv, backend, "111122223333", "arn:", "projects/p", kms.addr)
			kms.restart(t)
			back := time.Now()
			pollUntil(t, 30*time.Second, func() bool { return mintRaw(t, c, 1).code == codes.OK })
			t.Logf("%s: issuing again %v after the endpoint returned", backend, time.Since(back).Round(time.Millisecond))
			must(mintWeb(t, srv, c))
			if got := gauge(t, srv, "tier0_signer_circuit_open", backend); got != "0" {
				t.Fatalf("tier0_signer_circuit_open = %q after recovery, want 0", got)
			}
			if lines := warnLines(srv, logStart); len(lines) > 8 {
				t.Fatalf("%d WARN/ERROR lines for one outage:\n%s", len(lines), strings.Join(lines, "\n"))
			}
		})
	}
}

// TestKMSKeyTypesCLI: P-384 and RSA KMS keys pass `tier0 signer test`,
// `tier0 signer bench` and `tier0 ca prepare` (the first two used to sign
// a SHA-256 digest with every key, which a P-384 KMS key refuses).
func TestKMSKeyTypesCLI(t *testing.T) {
	awsClientEnv(t)
	srv := startKeyServer(t, t.TempDir())
	for _, tc := range []struct{ backend, spec string }{
		{"awskms", "ECC_NIST_P384"}, {"awskms", "RSA_2048"},
		{"gcpkms", "EC_SIGN_P384_SHA384"}, {"gcpkms", "RSA_SIGN_PKCS1_2048_SHA256"},
	} {
		t.Run(tc.backend+"/"+tc.spec, func(t *testing.T) {
			_, uri := newKMSFake(t, tc.backend, tc.spec)
			if out := must(runBin("tier0", "signer", "test", "--uri", uri)); !strings.HasPrefix(out, "ok: ") {
				t.Fatalf("signer test: %s", out)
			}
			if out := must(runBin("tier0", "signer", "bench", "--uri", uri, "--duration", "200ms", "--concurrency", "2")); !strings.Contains(out, "signs/s") {
				t.Fatalf("signer bench: %s", out)
			}
			id := strings.TrimSpace(must(srv.cli("ca", "prepare", "--signer", uri)))
			if list := must(srv.cli("ca", "list")); !strings.Contains(list, id) || !strings.Contains(list, "prepared") {
				t.Fatalf("ca list after preparing %s:\n%s", id, list)
			}
		})
	}
}
