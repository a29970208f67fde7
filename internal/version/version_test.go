package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	base := Info{Version: "(unknown)", Go: "go0", Platform: "linux/amd64"}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"release", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"},
			{Key: "vcs.modified", Value: "false"}, {Key: "CGO_ENABLED", Value: "0"},
		}}, "v1.2.3 (rev 0123456789ab 2026-01-02T03:04:05Z, go1.26.8 linux/amd64, static, no pkcs11)"},
		{"dirty checkout with cgo", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}, {Key: "CGO_ENABLED", Value: "1"},
		}}, "(devel) (rev abc+dirty, go1.26.8 linux/amd64, pkcs11)"},
		{"no vcs", debug.BuildInfo{}, "(unknown) (go0 linux/amd64, static, no pkcs11)"},
	} {
		if got := fromBuildInfo(&tc.bi, base).String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestGet: a test binary has build info; its Go version is filled in.
func TestGet(t *testing.T) {
	in := Get()
	if in.Go == "" || in.Platform == "" || in.Version == "" {
		t.Fatalf("Get() = %+v", in)
	}
}
