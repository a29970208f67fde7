// Package version describes the running binary from the build information
// the Go toolchain embeds (runtime/debug.ReadBuildInfo): module version,
// VCS revision and time, Go version and whether cgo (and so PKCS#11) is in.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// Info is what `tier0 --version` prints.
type Info struct {
	Version  string // module version ("(devel)" for a build from a checkout)
	Revision string // VCS revision, "" when unknown (e.g. -buildvcs=false)
	Time     string // VCS commit time (RFC 3339), "" when unknown
	Modified bool   // the work tree had uncommitted changes
	Go       string // Go toolchain version
	Platform string // GOOS/GOARCH
	CGO      bool   // built with cgo: PKCS#11 modules can be loaded
}

// Get reads the running binary's build information.
func Get() Info {
	in := Info{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	return fromBuildInfo(bi, in)
}

func fromBuildInfo(bi *debug.BuildInfo, in Info) Info {
	if v := bi.Main.Version; v != "" {
		in.Version = v
	}
	if bi.GoVersion != "" {
		in.Go = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "CGO_ENABLED":
			in.CGO = s.Value == "1"
		}
	}
	return in
}

// String is one line: "v1.2.3 (rev 0123abcd 2026-01-02T03:04:05Z, go1.26.8 linux/amd64, pkcs11)".
func (in Info) String() string {
	var b strings.Builder
	b.WriteString(in.Version)
	b.WriteString(" (")
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, "rev %s", rev)
		if in.Modified {
			b.WriteString("+dirty")
		}
		if in.Time != "" {
			b.WriteString(" " + in.Time)
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "%s %s, ", in.Go, in.Platform)
	if in.CGO {
		b.WriteString("pkcs11")
	} else {
		b.WriteString("static, no pkcs11")
	}
	b.WriteString(")")
	return b.String()
}

// SetOn gives a cobra root command --version, printing one line
// "NAME VERSION (...)".
func SetOn(cmd *cobra.Command) {
	cmd.Version = Get().String()
	cmd.SetVersionTemplate(cmd.Name() + " {{.Version}}\n")
}
