// Command image builds the tier0 container images without a container
// daemon: the binaries are built here with the Go toolchain and put FROM
// scratch into OCI images (go-containerregistry) with a passwd entry for a
// non-root user, CA certificates and /tmp; nothing else, not even a shell.
// Builds are reproducible: every timestamp is SOURCE_DATE_EPOCH (default:
// the commit time of the source), so the same source gives the same digest.
//
//	go run ./image --src .. --out ../bin/image [--tag dev] [--pkcs11]
//
// writes OUT/oci (an OCI image layout holding every image, named by the
// org.opencontainers.image.ref.name annotation) and OUT/NAME.tar per image
// (for `docker load` / `podman load`). See docs/OPERATIONS.md "Image".
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// options of one build.
type options struct {
	src     string // the tier0 repository (module root)
	out     string
	tag     string
	pkcs11  bool   // also build the cgo variant NAME:TAG-pkcs11
	caCerts string // host CA bundle copied into the images
	epoch   int64  // SOURCE_DATE_EPOCH; -1: from the source's commit time
}

func run(ctx context.Context, args []string) error {
	o := options{epoch: -1}
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	fl.StringVar(&o.src, "src", "..", "the tier0 source tree (module root)")
	fl.StringVar(&o.out, "out", "../bin/image", "output directory (replaced): OUT/oci and OUT/NAME-TAG.tar")
	fl.StringVar(&o.tag, "tag", "dev", "image tag")
	fl.BoolVar(&o.pkcs11, "pkcs11", true, "also build tier0:TAG-pkcs11 (cgo, with the C library, for PKCS#11 HSMs)")
	fl.StringVar(&o.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for KMS and https_web federation endpoints (Debian: ca-certificates)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
		}
		o.epoch = n
	}
	imgs, err := build(ctx, o)
	if err != nil {
		return err
	}
	if err := write(o.out, imgs); err != nil {
		return err
	}
	for _, im := range imgs {
		d, err := im.img.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s@%s  docker/podman: load -i %s\n", im.ref, d, filepath.Join(o.out, im.file+".tar"))
	}
	fmt.Printf("OCI layout (skopeo, crane): %s\n", filepath.Join(o.out, "oci"))
	return nil
}

// built is one image and the name it is written under.
type built struct {
	ref  string // e.g. tier0:dev
	file string // OUT/<file>.tar
	img  v1.Image
}

// build compiles the binaries into a temporary directory and assembles
// the images.
func build(ctx context.Context, o options) ([]built, error) {
	if _, err := os.Stat(o.caCerts); err != nil {
		return nil, fmt.Errorf("--ca-certs: %w (install Debian's ca-certificates or name another bundle)", err)
	}
	tmp, err := os.MkdirTemp("", "tier0-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var out []built
	for _, s := range specs(o.pkcs11) {
		bin := filepath.Join(tmp, s.variant(), s.binary)
		if err := goBuild(ctx, o.src, "./cmd/"+s.binary, bin, s.cgo); err != nil {
			return nil, err
		}
		img, err := s.image(bin, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		tag := o.tag
		if s.tagSuffix != "" {
			tag += "-" + s.tagSuffix
		}
		out = append(out, built{ref: s.name + ":" + tag, file: s.name + "-" + tag, img: img})
	}
	return out, nil
}

// goBuild builds pkg of the module at src into out: -trimpath, no symbol
// tables, VCS stamping when the source is a checkout; CGO_ENABLED=0 (a
// static binary) unless cgo.
func goBuild(ctx context.Context, src, pkg, out string, cgo bool) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=auto", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[cgo], "GOOS=linux")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s (CGO_ENABLED=%t): %w", pkg, cgo, err)
	}
	static, err := isStatic(out)
	if err != nil {
		return err
	}
	if static == cgo {
		return fmt.Errorf("%s: static=%t, want %t", out, static, !cgo)
	}
	return nil
}

// sourceTime is SOURCE_DATE_EPOCH, else the commit time stamped into the
// binary (vcs.time), else the Unix epoch.
func sourceTime(bin string, epoch int64) time.Time {
	if epoch >= 0 {
		return time.Unix(epoch, 0).UTC()
	}
	if bi, err := buildinfo.ReadFile(bin); err == nil {
		for _, s := range bi.Settings {
			if s.Key == "vcs.time" {
				if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
					return t.UTC()
				}
			}
		}
	}
	return time.Unix(0, 0).UTC()
}

// write replaces out with an OCI layout of every image and a docker
// tarball per image.
func write(out string, imgs []built) error {
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	p, err := layout.Write(filepath.Join(out, "oci"), empty.Index)
	if err != nil {
		return err
	}
	for _, im := range imgs {
		if err := p.AppendImage(im.img, layout.WithAnnotations(map[string]string{
			"org.opencontainers.image.ref.name": im.ref,
		})); err != nil {
			return err
		}
		tag, err := name.NewTag(im.ref)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(filepath.Join(out, im.file+".tar"), tag, im.img); err != nil {
			return err
		}
	}
	return nil
}

// assemble puts layers and a config on an empty OCI image.
func assemble(layers []v1.Layer, history []string, cfg v1.Config, created time.Time, platform v1.Platform) (v1.Image, error) {
	if len(layers) != len(history) {
		return nil, errors.New("image: one history line per layer")
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, l := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: history[i], Comment: "tier0 deploy/image"},
		})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	return mutate.ConfigFile(img, cf)
}
