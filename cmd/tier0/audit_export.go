package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"strings"

	"crypto/x509"
	"errors"
	"fmt"
	"github.com/spf13/pflag"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/auditexport"
	"github.com/tier0-ca/tier0/internal/server"
)

// verifiableFlags: `audit export --verifiable --store DSN --bundle B --out FILE`.
type verifiableFlags struct {
	on      bool
	dsn     string
	bundles []string
	out     string
}

func (v *verifiableFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&v.on, "verifiable", false, "write the self-contained verifiable export (docs/AUDIT.md): every record in log order with its leaf hash and certificate, the checkpoints, the tree checkpoints and the bundle; needs --store, --bundle and --out")
	fl.StringVar(&v.dsn, "store", "", "--verifiable: record store DSN (postgres://... or sqlite:PATH)")
	fl.StringArrayVar(&v.bundles, "bundle", nil, "--verifiable: trust bundle PEM file to embed (repeatable)")
	fl.StringVar(&v.out, "out", "", "--verifiable: the export file")
}

func (v *verifiableFlags) run(cmd *cobra.Command) error {
	if v.dsn == "" || v.out == "" || len(v.bundles) == 0 {
		return errors.New("--verifiable needs --store DSN, --bundle FILE and --out FILE (a verifiable export through a server is not available yet)")
	}
	roots, err := loadBundles(v.bundles)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	st, err := server.OpenStore(ctx, v.dsn)
	if err != nil {
		return err
	}
	defer st.Close()
	src, ok := st.(auditexport.Source)
	if !ok {
		return fmt.Errorf("the store %T keeps no tree checkpoints", st)
	}
	f, err := os.OpenFile(v.out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644) //nolint:gosec // an audit export is for auditors, not secret
	if err != nil {
		return err
	}
	n, err := auditexport.Write(ctx, f, src, roots, time.Now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(v.out)
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "exported %d records to %s (verify with: tier0 audit verify --export %s --bundle bundle.pem)\n", n, v.out, v.out)
	return nil
}

func loadBundles(paths []string) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for _, b := range paths {
		rs, err := loadPEMCerts(b)
		if err != nil {
			return nil, err
		}
		roots = append(roots, rs...)
	}
	return roots, nil
}

// verifyExportFile verifies a verifiable export with the bundle alone.
func verifyExportFile(cmd *cobra.Command, path string, bundles []string, wf witnessFlags) (*tier0v1.VerifyChainResponse, error) {
	if len(bundles) == 0 {
		return nil, errors.New("--export needs --bundle FILE (the auditor's own copy of the trust bundle)")
	}
	roots, err := loadBundles(bundles)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e, err := auditexport.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res, trees, err := auditexport.Verify(cmd.Context(), e, roots)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %d tree checkpoints verified\n", path, trees)
	if len(wf.keys) > 0 {
		ws, notes, min, err := wf.load()
		if err != nil {
			return nil, err
		}
		size, err := e.Cosigned(notes, ws, min)
		if err != nil {
			return nil, fmt.Errorf("witnesses: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: the tree of size %d is cosigned by at least %d of %d witnesses\n", path, size, min, len(ws))
	}
	return api.VerifyResultToPB(res), nil
}

// witnessFlags: `audit verify --export F --witness NAME=KEY --cosigned FILE [--witnesses N]`.
type witnessFlags struct {
	keys     []string
	cosigned []string
	min      int
}

func (w *witnessFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&w.keys, "witness", nil, "--export: require cosignatures of this witness, NAME=KEY (the Ed25519 public key in hex, as 'tier0 witness' prints it; repeatable)")
	fl.StringArrayVar(&w.cosigned, "cosigned", nil, "--export: a cosigned checkpoint note from a witness (its DIR/cosigned.note; repeatable)")
	fl.IntVar(&w.min, "witnesses", 0, "--export: how many of the --witness keys must have cosigned one tree checkpoint of the export (0: all)")
}

func (w *witnessFlags) load() (map[string]ed25519.PublicKey, [][]byte, int, error) {
	ws := map[string]ed25519.PublicKey{}
	for _, kv := range w.keys {
		name, k, ok := strings.Cut(kv, "=")
		pub, err := hex.DecodeString(k)
		if !ok || name == "" || err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, nil, 0, fmt.Errorf("--witness %q: want NAME=<Ed25519 public key, 64 hex digits>", kv)
		}
		ws[name] = pub
	}
	if len(w.cosigned) == 0 {
		return nil, nil, 0, errors.New("--witness needs --cosigned FILE (the witnesses' cosigned notes)")
	}
	var notes [][]byte
	for _, f := range w.cosigned {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, 0, err
		}
		notes = append(notes, b)
	}
	min := w.min
	if min > len(ws) {
		return nil, nil, 0, fmt.Errorf("--witnesses %d: only %d --witness keys given", min, len(ws))
	}
	if min <= 0 {
		min = len(ws)
	}
	return ws, notes, min, nil
}
