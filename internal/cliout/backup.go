package cliout

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/restore"
)

// Backup prints a backup's manifest (`tier0 backup create|verify`): a
// first line (headline with the file name) and the manifest, or JSON.
func Backup(w io.Writer, format, headline string, r operator.BackupResult) error {
	if format == JSON {
		return PrintJSON(w, r)
	}
	m := r.Manifest
	fmt.Fprintf(w, headline+"\n", r.File)
	fmt.Fprintf(w, "  trust domain   %s (taken on node %s at %s)\n", m.TrustDomain, m.NodeID, m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "  raft           index %d, term %d\n", m.Raft.Index, m.Raft.Term)
	fmt.Fprintf(w, "  journal        seq %d, head %s, exported %d, unexported %d, last commit %s\n",
		m.Journal.Seq, m.Journal.Head, m.Journal.ExportedSeq, m.Journal.Unexported, m.Journal.LastCommit.Format(time.RFC3339Nano))
	if m.Journal.Lineage != "" {
		fmt.Fprintf(w, "  lineage        %s\n", m.Journal.Lineage)
	}
	fmt.Fprintf(w, "  state          %d entries, %d tokens, %d bundle roots, %d CA roots\n", m.State.Entries, m.State.Tokens, m.State.BundleRoots, m.State.CARoots)
	fmt.Fprintf(w, "  payload        %d bytes, sha256 %s\n", m.Payload.Size, m.Payload.SHA256)
	switch {
	case m.DevKeys != nil:
		fmt.Fprintln(w, "  dev key        included, encrypted (AES-256-GCM, "+m.DevKeys.KDF+")")
	case len(m.State.SoftKeyRoots) > 0:
		fmt.Fprintf(w, "  keys           NOT included: the DEV-ONLY soft key of root %s stays in the server's DATA/ca; "+
			"without it a restore cannot sign (add --include-dev-key --passphrase-file F, or keep a copy of the key file)\n", strings.Join(m.State.SoftKeyRoots, ", "))
	default:
		fmt.Fprintln(w, "  keys           none (HSM/KMS keys stay in the HSM/KMS; restore with the same --signer)")
	}
	if r.Seconds > 0 {
		fmt.Fprintf(w, "  took           %.3fs\n", r.Seconds)
	}
	return nil
}

// Restored prints `tier0 backup restore`: what it restored into dataDir
// from the backup file from, and the next step; or the result as JSON.
func Restored(w io.Writer, format, from, dataDir string, res restore.Result) error {
	return JSONOr(w, format, res, func(w io.Writer) {
		fmt.Fprintf(w, "restored %s into %s as node %s\n", from, dataDir, res.NodeID)
		fmt.Fprintf(w, "  journal  seq %d, head %s (backup seq %d; %d records caught up from the store)\n", res.Seq, res.Head, res.BackupSeq, res.CaughtUp)
		fmt.Fprintf(w, "  state    %d entries, %d tokens, %d bundle roots\n", res.Entries, res.Tokens, res.BundleRoots)
		fmt.Fprintf(w, "  lineage  %s\n", res.Lineage)
		if res.DevKeys > 0 {
			fmt.Fprintf(w, "  dev key  %d DEV-ONLY soft key file(s) restored (0600)\n", res.DevKeys)
		}
		for _, warn := range res.Warnings {
			fmt.Fprintln(w, "  WARNING  "+warn)
		}
		fmt.Fprintf(w, "next: tier0 server --data-dir %s --node-id %s --trust-domain %s\n", dataDir, res.NodeID, res.TrustDomain)
	})
}
