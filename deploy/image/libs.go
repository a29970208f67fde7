package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// libDirs are searched, in order, for the shared libraries a dynamically
// linked binary needs (Debian's multiarch layout first).
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// interpreter returns the ELF program interpreter (PT_INTERP) of path,
// "" for a static binary.
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "", err
			}
			return strings.TrimRight(string(b), "\x00"), nil
		}
	}
	return "", nil
}

// isStatic tells whether the binary at path needs no interpreter and no
// shared library.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	interp, err := interpreter(f)
	if err != nil {
		return false, err
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return false, err
	}
	return interp == "" && len(libs) == 0, nil
}

// sharedLibs returns the files a dynamically linked binary needs to run in
// an otherwise empty image: its interpreter at the exact path the binary
// names, and every DT_NEEDED library (recursively) at the host path where
// it was found, which is on the interpreter's default search path. Files
// are copied, not linked, so the layer holds their contents.
func sharedLibs(binary string) ([]entry, error) {
	f, err := elf.Open(binary)
	if err != nil {
		return nil, err
	}
	interp, err := interpreter(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	if interp == "" {
		return nil, fmt.Errorf("image: %s is static: it needs no libraries", binary)
	}
	out := map[string]entry{interp: hostFile(interp, 0o755, interp)}
	seen := map[string]bool{}
	queue := []string{binary}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		ef, err := elf.Open(obj)
		if err != nil {
			return nil, err
		}
		needed, err := ef.ImportedLibraries()
		ef.Close()
		if err != nil {
			return nil, fmt.Errorf("image: %s: %w", obj, err)
		}
		for _, name := range needed {
			if seen[name] {
				continue
			}
			seen[name] = true
			path, err := findLib(name)
			if err != nil {
				return nil, err
			}
			if _, dup := out[path]; !dup && path != interp {
				out[path] = hostFile(path, 0o755, path)
			}
			queue = append(queue, path)
		}
	}
	var es []entry
	for _, e := range out {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].path < es[j].path })
	return es, nil
}

func findLib(name string) (string, error) {
	for _, d := range libDirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("image: shared library %s not found in %s", name, strings.Join(libDirs, ", "))
}
