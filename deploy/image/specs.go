package main

import (
	"debug/buildinfo"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// UID and GID of the non-root user every image runs as (numeric in the
// image config, so Kubernetes' runAsNonRoot can verify it).
const uid = 10001

// spec describes one image.
type spec struct {
	name       string // repository: tier0, tier0-agent
	tagSuffix  string // "pkcs11" for the cgo variant
	binary     string // cmd/<binary>
	cgo        bool
	user       string // the passwd name of uid
	home       string // its home and data directory (0700, owned by uid)
	entrypoint []string
	cmd        []string
	env        []string
	files      []entry // besides the binary and the base files
	desc       string
}

func (s spec) variant() string {
	if s.tagSuffix != "" {
		return s.name + "-" + s.tagSuffix
	}
	return s.name
}

// defaultServerConfig is /etc/tier0/tier0.yaml in the image: a one-node
// development CA reachable from outside the container. Production mounts
// its own file there (the Helm chart's ConfigMap).
const defaultServerConfig = `# tier0 image default: a single-node development CA (DEV-ONLY soft keys in
# /var/lib/tier0). Mount your own configuration here (keys are the flags of
# tier0 server --help); see docs/OPERATIONS.md "Image" and the Helm chart.
data-dir: /var/lib/tier0
listen: 0.0.0.0:8443
http: 0.0.0.0:8080
`

func specs(pkcs11 bool) []spec {
	server := spec{
		name: "tier0", binary: "tier0", user: "tier0", home: "/var/lib/tier0",
		entrypoint: []string{"/usr/local/bin/tier0"},
		cmd:        []string{"server", "--config", "/etc/tier0/tier0.yaml"},
		files:      []entry{dir("/etc/tier0", 0o755, 0), file("/etc/tier0/tier0.yaml", 0o644, defaultServerConfig)},
		desc:       "tier0 certificate authority node and CLI (static; no PKCS#11)",
	}
	agent := spec{
		name: "tier0-agent", binary: "tier0-agent", user: "tier0-agent", home: "/var/lib/tier0-agent",
		entrypoint: []string{"/usr/local/bin/tier0-agent"},
		cmd:        []string{"run", "--socket", "/run/tier0-agent/agent.sock"},
		env:        []string{"TIER0_AGENT_DATA=/var/lib/tier0-agent"},
		files:      []entry{dir("/run/tier0-agent", 0o755, uid)},
		desc:       "tier0 identity agent: SPIFFE Workload API (static)",
	}
	out := []spec{server, agent}
	if pkcs11 {
		p := server
		p.tagSuffix, p.cgo = "pkcs11", true
		p.desc = "tier0 certificate authority node and CLI (cgo and the C library: loads PKCS#11 modules; add your HSM's module)"
		out = append(out, p)
	}
	return out
}

// baseFiles: the non-root user, CA certificates, name service order and
// a world-writable /tmp.
func (s spec) baseFiles(caCerts string) []entry {
	return []entry{
		file("/etc/passwd", 0o644, "root:x:0:0:root:/root:/sbin/nologin\n"+
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
			s.user+":x:10001:10001:"+s.user+":"+s.home+":/sbin/nologin\n"),
		file("/etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n"+s.user+":x:10001:\n"),
		file("/etc/nsswitch.conf", 0o644, "hosts: files dns\n"),
		hostFile("/etc/ssl/certs/ca-certificates.crt", 0o644, caCerts),
		{path: "/tmp", mode: 0o777 | modeDirSticky, uid: 0},
		dir(s.home, 0o700, uid),
	}
}

// image assembles the image around the built binary bin.
func (s spec) image(bin string, o options) (v1.Image, error) {
	created := sourceTime(bin, o.epoch)
	base, err := layer(append(s.baseFiles(o.caCerts), s.files...), created)
	if err != nil {
		return nil, err
	}
	layers, history := []v1.Layer{base}, []string{"base: passwd (uid 10001), CA certificates, /tmp"}
	if s.cgo {
		libs, err := sharedLibs(bin)
		if err != nil {
			return nil, err
		}
		l, err := layer(libs, created)
		if err != nil {
			return nil, err
		}
		layers, history = append(layers, l), append(history, "C library of the build host (for cgo and PKCS#11 modules)")
	}
	binLayer, err := layer([]entry{hostFile("/usr/local/bin/"+s.binary, 0o755, bin)}, created)
	if err != nil {
		return nil, err
	}
	layers, history = append(layers, binLayer), append(history, "/usr/local/bin/"+s.binary)
	labels := map[string]string{
		"org.opencontainers.image.title":       s.name,
		"org.opencontainers.image.description": s.desc,
		"org.opencontainers.image.source":      "https://github.com/tier0-ca/tier0",
		"org.opencontainers.image.created":     created.Format("2006-01-02T15:04:05Z"),
		"org.opencontainers.image.version":     o.tag,
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, st := range bi.Settings {
			if st.Key == "vcs.revision" {
				labels["org.opencontainers.image.revision"] = st.Value
			}
		}
	}
	cfg := v1.Config{
		User:       "10001:10001",
		Entrypoint: s.entrypoint,
		Cmd:        s.cmd,
		Env:        append([]string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}, s.env...),
		WorkingDir: s.home,
		Labels:     labels,
	}
	if s.name == "tier0" {
		cfg.ExposedPorts = map[string]struct{}{"8443/tcp": {}, "8080/tcp": {}, "7443/tcp": {}}
	}
	return assemble(layers, history, cfg, created, v1.Platform{OS: "linux", Architecture: runtime.GOARCH})
}
