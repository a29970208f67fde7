package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one file, directory or symbolic link of a layer.
type entry struct {
	path     string      // absolute path in the image, e.g. /etc/passwd
	mode     fs.FileMode // permission bits (and fs.ModeDir / fs.ModeSymlink / fs.ModeSticky)
	uid, gid int
	data     []byte // file contents
	hostPath string // or: read the contents from this host file at build time
	link     string // symbolic link target
}

func dir(path string, mode fs.FileMode, uid int) entry {
	return entry{path: path, mode: fs.ModeDir | mode, uid: uid, gid: uid}
}

func file(path string, mode fs.FileMode, data string) entry {
	return entry{path: path, mode: mode, data: []byte(data)}
}

func hostFile(path string, mode fs.FileMode, host string) entry {
	return entry{path: path, mode: mode, hostPath: host}
}

// layer makes a reproducible uncompressed-then-gzipped OCI layer: entries
// sorted by path, parent directories added, every timestamp mtime, owners
// numeric (no user or group names), no PAX access/change times.
func layer(entries []entry, mtime time.Time) (v1.Layer, error) {
	all := withParents(entries)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range all {
		h := &tar.Header{
			Name:    strings.TrimPrefix(e.path, "/"),
			Mode:    int64(e.mode.Perm()),
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if e.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		default:
			h.Typeflag = tar.TypeReg
			data := e.data
			if e.hostPath != "" {
				var err error
				if data, err = os.ReadFile(e.hostPath); err != nil {
					return nil, fmt.Errorf("image: %s: %w", e.path, err)
				}
			}
			h.Size = int64(len(data))
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// withParents returns entries sorted by path with every missing parent
// directory added (0755, root).
func withParents(entries []entry) []entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.path] = true
	}
	all := append([]entry(nil), entries...)
	for _, e := range entries {
		for p := parent(e.path); p != "/"; p = parent(p) {
			if !have[p] {
				have[p] = true
				all = append(all, dir(p, 0o755, 0))
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].path < all[j].path })
	return all
}

func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// modeDirSticky is a directory with the sticky bit (like /tmp: 1777).
const modeDirSticky = fs.ModeDir | fs.ModeSticky
