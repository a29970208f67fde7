package keys

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/signer/kmsfake/awsfake"
)

// kmsRoot starts an AWS KMS fake with a P-256 key and returns the fake,
// its address and the key's URI.
func kmsRoot(t *testing.T) (*awsfake.Server, string, string) {
	t.Helper()
	for k, v := range awsfake.ClientEnv() {
		t.Setenv(k, v)
	}
	fake := awsfake.New()
	addr, err := fake.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Stop)
	arn, err := fake.CreateKey("ECC_NIST_P256")
	if err != nil {
		t.Fatal(err)
	}
	return fake, addr, "awskms:///" + arn + "?region=us-east-1&endpoint=http://" + addr
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestSignerReadyDirect: in direct mode the node is not ready while its
// root key's breaker is open, with a reason that names the backend and not
// the key; it is ready again once the key signs.
func TestSignerReadyDirect(t *testing.T) {
	fake, addr, uri := kmsRoot(t)
	m := newManager(t, startNode(t), t.TempDir(), Settings{Signer: uri, Mode: Direct, Timeout: time.Second})
	if _, err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.SignerReady(); err != nil {
		t.Fatalf("SignerReady with the KMS up: %v", err)
	}
	fake.Stop()
	waitUntil(t, "breaker open", func() bool {
		_ = signer.Probe(context.Background(), m.active) // what issuance does in direct mode
		return m.active.Health().State == signer.Down
	})
	err := m.SignerReady()
	if err == nil || !strings.HasPrefix(err.Error(), "signer unavailable: the awskms CA key cannot sign since ") ||
		strings.Contains(err.Error(), "arn:") || strings.Contains(err.Error(), "111122223333") {
		t.Fatalf("SignerReady with the KMS gone = %v", err)
	}
	if _, err := fake.Start(addr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "ready again", func() bool { return m.SignerReady() == nil })
}

// TestRootProbeDelegated: in delegated mode the root key signs once per
// rotation, so Run test-signs with it every RootProbe: a dead KMS shows in
// the log and the signer's health long before the next rotation, while
// the node stays ready (the in-memory intermediate signs).
func TestRootProbeDelegated(t *testing.T) {
	fake, addr, uri := kmsRoot(t)
	logs := &testenv.Buffer{}
	m := newManager(t, startNode(t), t.TempDir(), Settings{Signer: uri, Mode: Delegated, Timeout: time.Second, RootProbe: 20 * time.Millisecond},
		func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	if _, err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()

	fake.Stop()
	waitUntil(t, "a failed root probe logged", func() bool {
		return strings.Contains(logs.String(), "the CA root key failed its periodic test signature")
	})
	waitUntil(t, "root key down", func() bool { return m.active.Health().State == signer.Down })
	if err := m.SignerReady(); err != nil {
		t.Fatalf("delegated node not ready for its root: %v", err)
	}
	if _, err := fake.Start(addr); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "root key up again", func() bool { return m.active.Health().State == signer.Up })
}
