package auditcli

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tier0-ca/tier0/api"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/server"
	"github.com/tier0-ca/tier0/storage"
)

// VerifyOffline verifies the record store at dsn with no server: the hash
// chain, every signed checkpoint against roots, and every certificate
// against its columns and the chain to roots (storage.VerifyAuditWith).
func VerifyOffline(ctx context.Context, dsn string, roots []*x509.Certificate, from, to uint64) (*tier0v1.VerifyChainResponse, error) {
	store, err := server.OpenStore(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	res, err := storage.VerifyAuditWith(ctx, store, storage.AuditOptions{From: from, To: to, Roots: roots, Certs: storage.NewCertChecker(roots, nil)})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return api.VerifyResultToPB(res), nil
}

// UnverifiedTail returns the records of an intact verify that no signed
// checkpoint covers (0, 0: none).
func UnverifiedTail(r *tier0v1.VerifyChainResponse) (lo, hi uint64) {
	if !r.GetOk() || r.GetToSeq() <= r.GetLastCheckpointSeq() || r.GetToSeq() < r.GetFromSeq() || r.GetChecked() == 0 {
		return 0, 0
	}
	return max(r.GetLastCheckpointSeq()+1, r.GetFromSeq()), r.GetToSeq()
}

// WriteVerify writes a verify result (Table: lines of text, or JSON) that
// took took.
func WriteVerify(w io.Writer, format string, r *tier0v1.VerifyChainResponse, took time.Duration) {
	lo, hi := UnverifiedTail(r)
	if format == JSON {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"ok": r.GetOk(), "from": r.GetFromSeq(), "to": r.GetToSeq(), "checked": r.GetChecked(),
			"first_bad_seq": r.GetFirstBadSeq(), "problem": r.GetProblem(), "detail": r.GetDetail(),
			"anchor_seq": r.GetAnchorSeq(), "checkpoints": r.GetCheckpoints(), "last_checkpoint_seq": r.GetLastCheckpointSeq(),
			"head": hex.EncodeToString(r.GetHead()), "seconds": took.Seconds(),
			"unverified_from": lo, "unverified_to": hi,
			"decisions_checked": r.GetDecisionsChecked(), "decisions_to": r.GetDecisionsTo(), "decision_checkpoints": r.GetDecisionCheckpoints(),
			"last_decision_checkpoint": r.GetLastDecisionCheckpoint(), "decision_first_bad": r.GetDecisionFirstBad(),
		})
		return
	}
	if r.GetOk() {
		fmt.Fprintf(w, "OK: records %d..%d verified (%d records, %d signed checkpoints, last at seq %d) in %s\n",
			r.GetFromSeq(), r.GetToSeq(), r.GetChecked(), r.GetCheckpoints(), r.GetLastCheckpointSeq(), took.Round(time.Millisecond))
		if r.GetAnchorSeq() != 0 {
			fmt.Fprintf(w, "chain verified from the signed checkpoint at seq %d\n", r.GetAnchorSeq())
		}
		if hi != 0 {
			fmt.Fprintf(w, "UNVERIFIED: records %d..%d are newer than the newest signed checkpoint (hash chain only)\n", lo, hi)
		}
		fmt.Fprintf(w, "head: %x\n", r.GetHead())
		writeDecisionsOK(w, r)
		return
	}
	if r.GetDecisionFirstBad() != 0 {
		fmt.Fprintf(w, "FAILED: decision %d: %s\n", r.GetDecisionFirstBad(), r.GetProblem())
		fmt.Fprintf(w, "  %s\n  records intact; %d decisions verified before it; %d decision checkpoints verified\n", r.GetDetail(), r.GetDecisionsChecked(), r.GetDecisionCheckpoints())
		return
	}
	fmt.Fprintf(w, "FAILED: first bad seq %d: %s\n", r.GetFirstBadSeq(), r.GetProblem())
	if r.GetDetail() != "" {
		fmt.Fprintf(w, "  %s\n", r.GetDetail())
	}
	fmt.Fprintf(w, "  %d records verified before it; %d checkpoints verified\n", r.GetChecked(), r.GetCheckpoints())
}

// VerdictErr is the command's error for a verify result: nil when intact
// and either fully covered by signed checkpoints or allowTail.
func VerdictErr(r *tier0v1.VerifyChainResponse, allowTail bool) error {
	if !r.GetOk() && r.GetDecisionFirstBad() != 0 {
		return fmt.Errorf("audit verify FAILED: decision %d: %s", r.GetDecisionFirstBad(), r.GetProblem())
	}
	if !r.GetOk() {
		return fmt.Errorf("audit verify FAILED: seq %d: %s", r.GetFirstBadSeq(), r.GetProblem())
	}
	if lo, hi := UnverifiedTail(r); hi != 0 && !allowTail {
		return fmt.Errorf("audit verify: records %d..%d are newer than the newest signed checkpoint (hash chain only): unverified; wait for the next checkpoint or pass --allow-unverified-tail", lo, hi)
	}
	return nil
}

// writeDecisionsOK writes the decision chain's line of an intact verify.
func writeDecisionsOK(w io.Writer, r *tier0v1.VerifyChainResponse) {
	if r.GetDecisionsTo() == 0 {
		return
	}
	fmt.Fprintf(w, "decisions: %d verified up to %d (%d signed decision checkpoints, last at %d)\n",
		r.GetDecisionsChecked(), r.GetDecisionsTo(), r.GetDecisionCheckpoints(), r.GetLastDecisionCheckpoint())
	if r.GetDecisionsTo() > r.GetLastDecisionCheckpoint() {
		fmt.Fprintf(w, "UNVERIFIED: decisions %d..%d are newer than the newest signed decision checkpoint (hash chain only)\n",
			r.GetLastDecisionCheckpoint()+1, r.GetDecisionsTo())
	}
}
