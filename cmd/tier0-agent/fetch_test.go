package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/api/client"
)

// TestFetchRefusesSymlinks: links planted in OUT (key.pem of one SVID
// directory, another SVID directory itself) are refused for those entries
// with a clear error and their targets are untouched, while the other
// entries are written; OUT itself a link is refused before anything is
// minted.
func TestFetchRefusesSymlinks(t *testing.T) {
	h := newHarness(t, time.Hour)
	h.bootstrap("host-1")
	h.fake.AddEntry("host-1", "spiffe://example.org/web", 20*time.Minute)
	h.fake.AddEntry("host-1", "spiffe://example.org/db", 20*time.Minute)
	h.fake.AddEntry("host-1", "spiffe://example.org/api", 20*time.Minute)
	out := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim.pem")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	victimDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(out, "web"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(out, "web", client.KeyFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victimDir, filepath.Join(out, "db")); err != nil {
		t.Fatal(err)
	}

	_, stderr, msg := h.exec(ctxT(t), "fetch", "--out", out)
	if msg != "2 of 3 SVIDs failed" {
		t.Fatalf("fetch: %q, want 2 of 3 failed", msg)
	}
	for _, want := range []string{
		"FAILED\tspiffe://example.org/web\tclient: write svid: atomicfile: write " + filepath.Join(out, "web", "key.pem") +
			": is a symbolic link: refusing to write through it\n",
		"FAILED\tspiffe://example.org/db\tatomicfile: directory " + filepath.Join(out, "db") +
			" is a symbolic link: refusing to write through it\n",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
	if got, _ := os.ReadFile(victim); string(got) != "victim" {
		t.Errorf("key.pem link target overwritten: %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(out, "web", client.KeyFile)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("planted key.pem link replaced: %v", err)
	}
	if entries, _ := os.ReadDir(victimDir); len(entries) != 0 {
		t.Errorf("%d files written through the directory link", len(entries))
	}
	if h.fake.Minted("spiffe://example.org/db") != nil {
		t.Error("the entry behind a directory link was minted anyway")
	}
	if _, err := client.LoadSVIDFiles(filepath.Join(out, "api", "svid.pem"), filepath.Join(out, "api", "key.pem")); err != nil {
		t.Errorf("the unaffected entry was not written: %v", err)
	}

	// OUT itself a link: refused, nothing minted.
	calls := h.fake.Calls("MintX509SVIDs")
	linkOut := filepath.Join(t.TempDir(), "out")
	if err := os.Symlink(victimDir, linkOut); err != nil {
		t.Fatal(err)
	}
	_, _, msg = h.exec(ctxT(t), "fetch", "--out", linkOut)
	if want := "--out: atomicfile: directory " + linkOut + " is a symbolic link: refusing to write through it"; msg != want {
		t.Fatalf("fetch into a linked OUT: %q, want %q", msg, want)
	}
	if h.fake.Calls("MintX509SVIDs") != calls {
		t.Error("SVIDs were minted for a refused OUT")
	}
	if entries, _ := os.ReadDir(victimDir); len(entries) != 0 {
		t.Errorf("%d files written through the OUT link", len(entries))
	}
}
