package k8sattest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	webUID  = "6f0b9c0e-3a1d-4d8e-9b7a-2c5e1f4a8d31"
	dbUID   = "b2e4d6f8-1a3c-4e5f-8a9b-0c1d2e3f4a5b"
	webCID  = "4b5e57f6eb2f42b9039b3d1e13929295f231749c510cbe341cd68036d9af97e2"
	envoyID = "84532b306f259587c364bd7301e0813963d5b84fd27c9338f0862dab8f0499d7"
	dbCID   = "7bdc25d1694ef984782a16f6f1710c1c6bc83ba7a131b515baf532bea021d011"
)

// TestParseCgroup runs the test vectors in testdata/cgroup: the layouts of
// cgroup v1 and v2, the cgroupfs and systemd drivers, docker, containerd
// and CRI-O, kind, and a path seen from another cgroup namespace.
func TestParseCgroup(t *testing.T) {
	tests := map[string]struct {
		want Container
		in   bool
		err  string
	}{
		"v1-cgroupfs-docker":     {want: Container{webUID, webCID}, in: true},
		"v1-systemd-docker":      {want: Container{webUID, webCID}, in: true},
		"v1-systemd-crio":        {want: Container{webUID, webCID}, in: true},
		"v1-cgroupfs-crio":       {want: Container{webUID, webCID}, in: true},
		"v2-systemd-containerd":  {want: Container{webUID, webCID}, in: true},
		"v2-systemd-guaranteed":  {want: Container{dbUID, dbCID}, in: true},
		"v2-cgroupfs-containerd": {want: Container{webUID, webCID}, in: true},
		"v2-kind":                {want: Container{webUID, webCID}, in: true},
		"v2-relative-cgroupns":   {want: Container{webUID, envoyID}, in: true},
		"v2-nested":              {want: Container{webUID, webCID}, in: true},
		"host-service":           {},
		"docker-plain":           {},
		"v1-host":                {},
		"crio-conmon":            {err: `k8sattest: unusable cgroup: pod ` + webUID + ` but no container id in "crio-conmon-` + webCID + `.scope"`},
		"two-pods":               {err: "k8sattest: unusable cgroup: lines name pod " + webUID + " container " + webCID + " and pod " + dbUID + " container " + dbCID},
		"pod-only":               {err: "k8sattest: unusable cgroup: pod " + webUID + " but no container in "},
	}
	files, _ := filepath.Glob("testdata/cgroup/*")
	if len(files) != len(tests) {
		t.Fatalf("%d test vectors, %d expectations", len(files), len(tests))
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata/cgroup", name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, in, err := ParseCgroup(f)
			if tt.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.err) || !errors.Is(err, ErrBadCgroup) {
					t.Fatalf("err %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want || in != tt.in {
				t.Fatalf("got %+v in pod %v err %v, want %+v in pod %v", got, in, err, tt.want, tt.in)
			}
		})
	}
}

// FuzzParseCgroup: arbitrary input never panics; an accepted container
// has a UUID pod and a 64-hex container ID that occur in the input.
func FuzzParseCgroup(f *testing.F) {
	files, _ := filepath.Glob("testdata/cgroup/*")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, in, err := ParseCgroup(strings.NewReader(string(b)))
		if err != nil || !in {
			return
		}
		if !isUUID(c.PodUID) || !isHex64(c.ID) || !strings.Contains(string(b), c.ID) {
			t.Fatalf("accepted %+v from %q", c, b)
		}
	})
}
