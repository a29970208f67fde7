package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
	"github.com/tier0-ca/tier0/internal/testenv"
	"github.com/tier0-ca/tier0/signer/soft"
)

// TestDelegatedKeyNeverWritten runs the delegated key manager over a real
// Raft node through several rotations with SVIDs journaled and a snapshot
// taken, then searches every file in the data dir and the debug log for
// each in-memory issuing key, in every encoding we might have leaked.
func TestDelegatedKeyNeverWritten(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	logs := &testenv.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	node := hatest.Node(t, func(c *ha.Config) { c.DataDir, c.Logger = dir, log })
	rootKey := filepath.Join(t.TempDir(), "root.key")
	if err := soft.Generate(rootKey); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		keys []*ecdsa.PrivateKey
	)
	m := newManager(t, node, dir, Settings{Signer: "soft:" + rootKey, Mode: Delegated, IntermediateTTL: 3 * time.Second, AllowShort: true}, func(c *Config) {
		c.Logger = log
		c.NewKey = func() (crypto.Signer, error) {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			mu.Lock()
			keys = append(keys, k)
			mu.Unlock()
			return k, err
		}
	})
	iss, err := m.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: td, Issuer: iss, NodeID: "n1", Authorizer: denyAll{}, Journal: node, MinCappedTTL: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	m.Attach(c, nil)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	id := spiffeid.RequireFromString("spiffe://example.org/tier0/node/n1")
	tick := time.NewTicker(200 * time.Millisecond) // issuance pace while rotations happen
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 3; <-tick.C {
		csr, _, err := client.NewCSR(spiffeid.ID{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.MintFor(ctx, spiffeid.ID{}, id, csr, 15*time.Minute); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		n = len(keys)
		mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d issuing keys after 30s, want 3", n)
		}
	}
	if err := node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if err := node.Close(); err != nil {
		t.Fatal(err)
	}

	var needles [][]byte
	mu.Lock()
	for _, k := range keys {
		d, _ := k.Bytes()
		pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
		sec1, _ := x509.MarshalECPrivateKey(k)
		needles = append(needles, d, []byte(hex.EncodeToString(d)), []byte(base64.StdEncoding.EncodeToString(d)),
			[]byte(base64.RawURLEncoding.EncodeToString(d)), pkcs8, sec1)
	}
	mu.Unlock()
	files := 0
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("an in-memory issuing key is in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logged := []byte(logs.String())
	for _, n := range needles {
		if bytes.Contains(logged, n) {
			t.Error("an in-memory issuing key is in the log")
		}
	}
	if files < 3 {
		t.Fatalf("searched only %d files", files)
	}
}
