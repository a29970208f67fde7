// Package atomicfile replaces files so that a reader sees the old content
// or the new, never a part, and never through a symbolic link: a file is
// written as a temporary file created (O_EXCL, O_NOFOLLOW) in its open
// directory with its final mode, fsynced, renamed over the target
// (renameat, relative to the same directory), and the directory fsynced.
// A target that is a symbolic link (or not a regular file) is refused and
// left as it is, so a link planted where a key is written cannot redirect
// it; Dir extends the rule to the directories tier0 creates itself.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSymlink: a directory or target file is a symbolic link; nothing was
// written through it.
var ErrSymlink = errors.New("is a symbolic link: refusing to write through it")

// ErrNotRegular: a target exists and is not a regular file (a directory,
// a FIFO, a device).
var ErrNotRegular = errors.New("is not a regular file")

// Write replaces path with data, created with mode. The directory of path
// must exist (symbolic links in it are the operator's and are followed);
// path itself must not be a symbolic link.
func Write(path string, data []byte, mode os.FileMode) error {
	f, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	d := &Dir{f: f, path: filepath.Dir(path)}
	defer d.Close()
	return d.WriteFile(filepath.Base(path), data, mode)
}

// Dir is an open directory. Its methods take one path element and never
// follow a symbolic link, whatever replaces the directory's path later.
type Dir struct {
	f    *os.File
	path string // for messages
}

// OpenDir opens the directory path, creating it (and missing parents) with
// perm. Parents may be symbolic links (they are the operator's); path
// itself must not be one.
func OpenDir(path string, perm os.FileMode) (*Dir, error) {
	path = filepath.Clean(path)
	if err := os.MkdirAll(filepath.Dir(path), perm); err != nil {
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	if err := os.Mkdir(path, perm); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		return nil, fmt.Errorf("atomicfile: directory %s %w", path, dirError(err, unix.Lstat(path, &st) == nil && isLink(st)))
	}
	return &Dir{f: os.NewFile(uintptr(fd), path), path: path}, nil
}

// Path is the directory's path as opened.
func (d *Dir) Path() string { return d.path }

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

func (d *Dir) fd() int { return int(d.f.Fd()) }

// MkSub opens the subdirectory name, creating it with perm if missing; it
// must not be a symbolic link.
func (d *Dir) MkSub(name string, perm os.FileMode) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(d.fd(), name, uint32(perm.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("atomicfile: mkdir %s: %w", filepath.Join(d.path, name), err)
	}
	return d.Sub(name)
}

// Sub opens the existing subdirectory name; it must not be a symbolic
// link. A missing one is an error wrapping fs.ErrNotExist.
func (d *Dir) Sub(name string) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		return nil, fmt.Errorf("atomicfile: directory %s %w", p, dirError(err, unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && isLink(st)))
	}
	return &Dir{f: os.NewFile(uintptr(fd), p), path: p}, nil
}

// ReadFile reads the regular file name, at most limit bytes; a symbolic
// link, a FIFO or a device is refused without blocking.
func (d *Dir) ReadFile(name string, limit int64) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd(), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("atomicfile: read %s: %w", p, ErrSymlink)
		}
		return nil, fmt.Errorf("atomicfile: read %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("atomicfile: read %s: %w", p, ErrNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("atomicfile: read %s: %w", p, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("atomicfile: read %s: larger than %d bytes", p, limit)
	}
	return data, nil
}

// WriteFile atomically replaces the file name with data, created with
// mode. An existing name that is a symbolic link or not a regular file is
// refused and left untouched.
func (d *Dir) WriteFile(name string, data []byte, mode os.FileMode) (err error) {
	if err := checkName(name); err != nil {
		return err
	}
	p := filepath.Join(d.path, name)
	var st unix.Stat_t
	switch err := unix.Fstatat(d.fd(), name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	case isLink(st):
		return fmt.Errorf("atomicfile: write %s: %w", p, ErrSymlink)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("atomicfile: write %s: %w", p, ErrNotRegular)
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	tmp := "." + name + ".tmp" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(d.fd(), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(mode.Perm()))
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), filepath.Join(d.path, tmp))
	defer func() {
		if err != nil {
			f.Close()
			_ = unix.Unlinkat(d.fd(), tmp, 0)
		}
	}()
	if err = f.Chmod(mode); err != nil { // the umask may have narrowed it
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	// renameat replaces the directory entry: even a link planted after the
	// check above is replaced, never written through.
	if err = unix.Renameat(d.fd(), tmp, d.fd(), name); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", p, err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: write %s: sync directory: %w", p, err)
	}
	return nil
}

// checkName accepts one path element.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("atomicfile: %q is not a single file name", name)
	}
	return nil
}

func isLink(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFLNK }

// dirError explains why a directory could not be opened (with O_DIRECTORY
// and O_NOFOLLOW Linux answers ENOTDIR or ELOOP for a link: link says
// which it was).
func dirError(err error, link bool) error {
	switch {
	case link || errors.Is(err, unix.ELOOP):
		return ErrSymlink
	case errors.Is(err, unix.ENOTDIR):
		return errors.New("is not a directory")
	case errors.Is(err, unix.ENOENT):
		return missing{}
	}
	return fmt.Errorf("cannot be opened: %w", err)
}

// missing is a directory that does not exist; it matches fs.ErrNotExist.
type missing struct{}

func (missing) Error() string        { return "does not exist" }
func (missing) Is(target error) bool { return target == fs.ErrNotExist }
