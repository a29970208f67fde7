package k8sattest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tier0-ca/tier0/internal/redact"
)

// maxCgroupBytes bounds what is read of /proc/PID/cgroup (a real one is a
// few hundred bytes to a few KiB).
const maxCgroupBytes = 64 << 10

// ErrBadCgroup: a cgroup file that names more than one pod or container,
// or a pod without a container.
var ErrBadCgroup = errors.New("k8sattest: unusable cgroup")

// Container is a pod UID and a container ID found in a cgroup file.
type Container struct {
	PodUID string // with dashes, as in the pod's metadata.uid
	ID     string // 64 hex digits, as in containerStatuses[].containerID after "runtime://"
}

// ParseCgroup reads a /proc/PID/cgroup file (cgroup v1: one line per
// hierarchy; v2: "0::PATH") and returns the pod and container the process
// runs in. It knows the kubelet's layouts: the cgroupfs driver
// (.../pod<UID>/<ID>, or crio-<ID> with CRI-O) and the systemd driver
// (...-pod<UID_WITH_UNDERSCORES>.slice/<RUNTIME>-<ID>.scope, where RUNTIME
// is docker, cri-containerd or crio), with or without a QoS level, under
// any prefix (kubepods, kubelet-kubepods in kind, a relative path seen from
// another cgroup namespace). A process in no pod gives (zero, false, nil).
func ParseCgroup(r io.Reader) (Container, bool, error) {
	sc := bufio.NewScanner(io.LimitReader(r, maxCgroupBytes))
	sc.Buffer(make([]byte, 0, 4096), maxCgroupBytes)
	var found Container
	ok := false
	for sc.Scan() {
		line := sc.Text()
		// hierarchy-ID:controller-list:cgroup-path; the path may hold colons.
		_, rest, ok1 := strings.Cut(line, ":")
		_, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 {
			continue
		}
		c, inPod, err := parsePath(path)
		if err != nil {
			return Container{}, false, err
		}
		if !inPod {
			continue
		}
		if ok && c != found {
			return Container{}, false, fmt.Errorf("%w: lines name pod %s container %s and pod %s container %s", ErrBadCgroup, found.PodUID, found.ID, c.PodUID, c.ID)
		}
		found, ok = c, true
	}
	if err := sc.Err(); err != nil {
		return Container{}, false, fmt.Errorf("k8sattest: read cgroup: %w", err)
	}
	return found, ok, nil
}

// parsePath finds the pod component of one cgroup path and the container
// component right below it.
func parsePath(path string) (Container, bool, error) {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		uid, ok := podUID(p)
		if !ok {
			continue
		}
		if i+1 >= len(parts) || parts[i+1] == "" {
			return Container{}, false, fmt.Errorf("%w: pod %s but no container in %s", ErrBadCgroup, uid, redact.Quote(path))
		}
		id, ok := containerID(parts[i+1])
		if !ok {
			return Container{}, false, fmt.Errorf("%w: pod %s but no container id in %s", ErrBadCgroup, uid, redact.Quote(parts[i+1]))
		}
		return Container{PodUID: uid, ID: id}, true, nil
	}
	return Container{}, false, nil
}

// podUID recognises "pod<UID>" (cgroupfs) and "...-pod<UID_>.slice"
// (systemd, dashes of the UID turned into underscores).
func podUID(p string) (string, bool) {
	if s, ok := strings.CutSuffix(p, ".slice"); ok {
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		u := strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
		return u, isUUID(u)
	}
	u, ok := strings.CutPrefix(p, "pod")
	return u, ok && isUUID(u)
}

// containerID recognises "<ID>" (cgroupfs with docker or containerd),
// "crio-<ID>" (cgroupfs with CRI-O) and "<RUNTIME>-<ID>.scope" (systemd).
// Other names (CRI-O's "crio-conmon-<ID>.scope", the monitor process) are
// not a container.
func containerID(p string) (string, bool) {
	s := strings.TrimSuffix(p, ".scope")
	for _, rt := range []string{"docker-", "cri-containerd-", "crio-", "containerd-"} {
		if id, ok := strings.CutPrefix(s, rt); ok && isHex64(id) {
			return id, true
		}
	}
	return s, s == p && isHex64(s)
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if r != '-' {
				return false
			}
		} else if !isHexDigit(r) {
			return false
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !isHexDigit(r) {
			return false
		}
	}
	return true
}

func isHexDigit(r rune) bool { return ('0' <= r && r <= '9') || ('a' <= r && r <= 'f') }
