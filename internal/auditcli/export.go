package auditcli

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/api"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/auditexport"
	"github.com/tier0-ca/tier0/internal/server"
)

// WriteVerifiable writes the verifiable export (auditexport.Write) of the
// record store at dsn, with roots as its bundle, to the new file out (an
// existing file is refused; a failed export leaves none). It returns the
// number of records.
func WriteVerifiable(ctx context.Context, dsn string, roots []*x509.Certificate, out string) (int, error) {
	st, err := server.OpenStore(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	src, ok := st.(auditexport.Source)
	if !ok {
		return 0, fmt.Errorf("the store %T keeps no tree checkpoints", st)
	}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644) //nolint:gosec // an audit export is for auditors, not secret
	if err != nil {
		return 0, err
	}
	n, err := auditexport.Write(ctx, f, src, roots, time.Now())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out)
		return 0, err
	}
	return n, nil
}

// Witnesses are the witness requirements of `audit verify --export`:
// NAME=KEY specs (Ed25519 public key in hex), the cosigned note files, and
// how many of the keys must have cosigned (0: all).
type Witnesses struct {
	Keys     []string
	Cosigned []string
	Min      int
}

// Load parses the keys, reads the notes and resolves Min.
func (w Witnesses) Load() (map[string]ed25519.PublicKey, [][]byte, int, error) {
	ws := map[string]ed25519.PublicKey{}
	for _, kv := range w.Keys {
		name, k, ok := strings.Cut(kv, "=")
		pub, err := hex.DecodeString(k)
		if !ok || name == "" || err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, nil, 0, fmt.Errorf("--witness %q: want NAME=<Ed25519 public key, 64 hex digits>", kv)
		}
		ws[name] = pub
	}
	var notes [][]byte
	for _, f := range w.Cosigned {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, 0, err
		}
		notes = append(notes, b)
	}
	n := w.Min
	if n > len(ws) {
		return nil, nil, 0, fmt.Errorf("--witness-min %d: only %d --witness keys given", n, len(ws))
	}
	if n <= 0 {
		n = len(ws)
	}
	return ws, notes, n, nil
}

// VerifyExport verifies the verifiable export at path with roots alone
// (auditexport.Verify) and, when wit names keys, that enough witnesses
// cosigned one of its tree checkpoints. Progress lines go to log.
func VerifyExport(ctx context.Context, path string, roots []*x509.Certificate, wit Witnesses, log io.Writer) (*tier0v1.VerifyChainResponse, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	e, err := auditexport.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res, trees, err := auditexport.Verify(ctx, e, roots)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "%s: %d tree checkpoints verified\n", path, trees)
	if len(wit.Keys) > 0 {
		ws, notes, n, err := wit.Load()
		if err != nil {
			return nil, err
		}
		if len(notes) == 0 { // the cosignatures the log stored (AuditLog.AddCosignature)
			notes = e.TreeNotes()
		}
		size, err := e.Cosigned(notes, ws, n)
		if err != nil {
			return nil, fmt.Errorf("witnesses: %w", err)
		}
		fmt.Fprintf(log, "%s: the tree of size %d is cosigned by at least %d of %d witnesses\n", path, size, n, len(ws))
	}
	return api.VerifyResultToPB(res), nil
}
