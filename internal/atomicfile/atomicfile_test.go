package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	for _, content := range []string{"first", "second"} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files left in the directory, want only the target", len(entries))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

// plantLink makes dir/name a symbolic link to a victim file holding
// "victim" and returns the victim's path.
func plantLink(t *testing.T, dir, name string) string {
	t.Helper()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	return victim
}

func assertUntouched(t *testing.T, victim, link string) {
	t.Helper()
	if got, err := os.ReadFile(victim); err != nil || string(got) != "victim" {
		t.Errorf("symlink target changed: %q, %v", got, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer the planted link: %v", link, err)
	}
}

// TestWriteRefusesSymlinkTarget: a link planted where a key is written is
// refused with a clear error; its target is untouched and no temporary
// file is left behind.
func TestWriteRefusesSymlinkTarget(t *testing.T) {
	dir := t.TempDir()
	victim := plantLink(t, dir, "key.pem")
	err := Write(filepath.Join(dir, "key.pem"), []byte("secret"), 0o600)
	want := "atomicfile: write " + filepath.Join(dir, "key.pem") + ": is a symbolic link: refusing to write through it"
	if !errors.Is(err, ErrSymlink) || err.Error() != want {
		t.Fatalf("Write through a symlink: %v\nwant %s", err, want)
	}
	assertUntouched(t, victim, filepath.Join(dir, "key.pem"))
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d entries in the directory, want only the planted link", len(entries))
	}
}

func TestWriteRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "key.pem")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(fifo, []byte("x"), 0o600); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Write over a FIFO: %v, want ErrNotRegular", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "sub"), []byte("x"), 0o600); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Write over a directory: %v, want ErrNotRegular", err)
	}
}

// TestDirRefusesSymlinks: OpenDir and MkSub refuse a directory that is a
// symbolic link (nothing is created in its target); parents of OpenDir's
// path may be links.
func TestDirRefusesSymlinks(t *testing.T) {
	base := t.TempDir()
	elsewhere := t.TempDir()
	if err := os.Symlink(elsewhere, filepath.Join(base, "out")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(filepath.Join(base, "out"), 0o700); !errors.Is(err, ErrSymlink) ||
		err.Error() != "atomicfile: directory "+filepath.Join(base, "out")+" is a symbolic link: refusing to write through it" {
		t.Fatalf("OpenDir(symlink) = %v", err)
	}
	// A link in the parents is the operator's: followed.
	d, err := OpenDir(filepath.Join(base, "out", "creds"), 0o700)
	if err != nil {
		t.Fatalf("OpenDir under a linked parent: %v", err)
	}
	defer d.Close()
	if fi, err := os.Stat(filepath.Join(elsewhere, "creds")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created directory: %v, %v", fi, err)
	}
	// MkSub: a planted link is refused, its target stays empty.
	victimDir := t.TempDir()
	if err := os.Symlink(victimDir, filepath.Join(elsewhere, "creds", "web")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.MkSub("web", 0o700); !errors.Is(err, ErrSymlink) {
		t.Fatalf("MkSub(symlink) = %v, want ErrSymlink", err)
	}
	if _, err := d.Sub("web"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Sub(symlink) = %v, want ErrSymlink", err)
	}
	if entries, _ := os.ReadDir(victimDir); len(entries) != 0 {
		t.Fatalf("%d files written into the link's target", len(entries))
	}
	if _, err := d.Sub("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Sub(missing) = %v, want fs.ErrNotExist", err)
	}
	sub, err := d.MkSub("db", 0o700)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.WriteFile("key.pem", []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(elsewhere, "creds", "db", "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	for _, name := range []string{"", ".", "..", "a/b", "a\x00b"} {
		if err := d.WriteFile(name, nil, 0o600); err == nil {
			t.Errorf("WriteFile(%q) accepted", name)
		}
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	d, err := OpenDir(dir, 0o700)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteFile("a", []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := d.ReadFile("a", 5); err != nil || string(got) != "hello" {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	if _, err := d.ReadFile("a", 4); err == nil || !strings.Contains(err.Error(), "larger than 4 bytes") {
		t.Fatalf("ReadFile over the limit: %v", err)
	}
	plantLink(t, dir, "link")
	if _, err := d.ReadFile("link", 100); !errors.Is(err, ErrSymlink) {
		t.Fatalf("ReadFile(symlink) = %v", err)
	}
	// A FIFO would block a plain open: refused at once.
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadFile("fifo", 100); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("ReadFile(fifo) = %v", err)
	}
}
