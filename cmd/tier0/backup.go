package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
)

func newBackupCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Consistent backups of the replicated CA state (create, verify)"}
	var out, passFile, output string
	var devKey bool
	create := &cobra.Command{
		Use:   "create --out FILE [--include-dev-key --passphrase-file F]",
		Short: "Take a consistent raft snapshot on the leader and write it with a manifest and checksum",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var pass []byte
			if devKey {
				if passFile == "" {
					return errors.New("--include-dev-key needs --passphrase-file: the key is stored encrypted")
				}
				var err error
				if pass, err = readPassphrase(passFile); err != nil {
					return err
				}
			} else if passFile != "" {
				return errors.New("--passphrase-file is only used with --include-dev-key")
			}
			res, err := backupFromLeader(cmd.Context(), g, out, devKey, pass)
			if err != nil {
				return err
			}
			return printBackupResult(cmd.OutOrStdout(), output, res)
		},
	}
	create.Flags().StringVar(&out, "out", "", "backup file to write (0600)")
	create.Flags().BoolVar(&devKey, "include-dev-key", false, "also store the DEV-ONLY soft root key files, encrypted (never HSM/KMS or delegated keys)")
	create.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the passphrase that encrypts the dev key (with --include-dev-key)")
	create.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	_ = create.MarkFlagRequired("out")
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a backup's checksum and manifest, parse its snapshot and check the journal chain to the head",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _, err := verifyBackup(args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			return printBackupResult(cmd.OutOrStdout(), output, backupResult{File: args[0], Manifest: b.Manifest})
		},
	}
	verify.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.AddCommand(create, verify)
	return cmd
}

type backupResult struct {
	File     string         `json:"file"`
	Manifest backupManifest `json:"manifest"`
	Seconds  float64        `json:"seconds,omitempty"`
}

// errTryLeader: the node asked is not the leader (or has none); the backup
// is tried on the next address.
var errTryLeader = errors.New("backup: not taken on this node")

// backupFromLeader tries each server address (--server, or DATA/server.json)
// in turn until one (the leader) takes the backup: a snapshot stream is
// not forwarded.
func backupFromLeader(ctx context.Context, g *globalFlags, out string, devKey bool, pass []byte) (backupResult, error) {
	addrs := g.servers
	if len(addrs) == 0 {
		var info serverInfo
		raw, err := os.ReadFile(filepath.Join(g.dataDir, "server.json"))
		if err == nil {
			_ = json.Unmarshal(raw, &info)
		}
		addrs = info.Servers
	}
	if len(addrs) == 0 {
		addrs = []string{""} // let dialOperator explain
	}
	var errs []error
	for _, a := range addrs {
		gg := *g
		if a != "" {
			gg.servers = []string{a}
		}
		c, err := dialOperator(ctx, &gg, "admin")
		if err != nil {
			return backupResult{}, err
		}
		res, err := createBackup(ctx, c, out, devKey, pass)
		c.Close()
		if !errors.Is(err, errTryLeader) {
			return res, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return backupResult{}, fmt.Errorf("backup: no server took the backup (pass the leader's address with --server): %w", errors.Join(errs...))
}

// createBackup streams a backup from the server into out.
func createBackup(ctx context.Context, c *client.Client, out string, devKey bool, pass []byte) (backupResult, error) {
	start := time.Now()
	stream, err := tier0v1.NewBackupClient(c).CreateBackup(ctx, &tier0v1.CreateBackupRequest{IncludeDevKeys: devKey})
	if err != nil {
		return backupResult{}, cliErr(err)
	}
	first, err := stream.Recv()
	if devKey && status.Code(err) == codes.InvalidArgument {
		return backupResult{}, fmt.Errorf("%w: %w", errNoDevKeyCLI, cliErr(err))
	}
	if status.Code(err) == codes.Unavailable {
		return backupResult{}, fmt.Errorf("%w: %w", errTryLeader, cliErr(err))
	}
	if err != nil {
		return backupResult{}, cliErr(err)
	}
	hdr := first.GetHeader()
	if hdr == nil || hdr.GetSize() < 0 {
		return backupResult{}, errors.New("backup: the server sent no header")
	}
	payload, err := os.CreateTemp(filepath.Dir(out), ".tmp-payload-")
	if err != nil {
		return backupResult{}, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(payload.Name())
	defer payload.Close()
	h := sha256.New()
	w := io.MultiWriter(payload, h)
	var got int64
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return backupResult{}, cliErr(err)
		}
		n, err := w.Write(chunk.GetData())
		if err != nil {
			return backupResult{}, fmt.Errorf("backup: %w", err)
		}
		got += int64(n)
	}
	if got != hdr.GetSize() {
		return backupResult{}, fmt.Errorf("backup: received %d of %d bytes", got, hdr.GetSize())
	}
	if _, err := payload.Seek(0, io.SeekStart); err != nil {
		return backupResult{}, fmt.Errorf("backup: %w", err)
	}
	info, err := ha.InspectSnapshot(payload)
	if err != nil {
		return backupResult{}, fmt.Errorf("backup: the snapshot received does not verify: %w", err)
	}
	m := &backupManifest{Format: backupFormat, Version: backupVersion, TrustDomain: hdr.GetTrustDomain(), NodeID: hdr.GetNodeId(),
		CreatedAt: time.Unix(0, hdr.GetCreatedAt()).UTC()}
	m.Raft.Index, m.Raft.Term, m.Raft.Meta = hdr.GetRaftIndex(), hdr.GetRaftTerm(), json.RawMessage(hdr.GetRaftMeta())
	m.Payload.Size, m.Payload.SHA256 = got, hex.EncodeToString(h.Sum(nil))
	m.fill(info)
	if devKey {
		keys := map[string][]byte{}
		for _, k := range hdr.GetDevKeys() {
			keys[k.GetPath()] = k.GetPem()
		}
		if len(keys) == 0 {
			return backupResult{}, errNoDevKeyCLI
		}
		if m.DevKeys, err = sealDevKeys(keys, pass, m.TrustDomain); err != nil {
			return backupResult{}, fmt.Errorf("backup: encrypt dev key: %w", err)
		}
		for _, k := range keys {
			clear(k)
		}
	}
	if err := writeBackupFile(out, m, payload); err != nil {
		return backupResult{}, err
	}
	return backupResult{File: out, Manifest: *m, Seconds: time.Since(start).Seconds()}, nil
}

func printBackupResult(w io.Writer, output string, r backupResult) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	m := r.Manifest
	fmt.Fprintf(w, "backup %s: OK\n", r.File)
	fmt.Fprintf(w, "  trust domain   %s (taken on node %s at %s)\n", m.TrustDomain, m.NodeID, m.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(w, "  raft           index %d, term %d\n", m.Raft.Index, m.Raft.Term)
	fmt.Fprintf(w, "  journal        seq %d, head %s, exported %d, unexported %d, last commit %s\n",
		m.Journal.Seq, m.Journal.Head, m.Journal.ExportedSeq, m.Journal.Unexported, m.Journal.LastCommit.Format(time.RFC3339Nano))
	fmt.Fprintf(w, "  state          %d entries, %d tokens, %d bundle roots, %d CA roots\n", m.State.Entries, m.State.Tokens, m.State.BundleRoots, m.State.CARoots)
	fmt.Fprintf(w, "  payload        %d bytes, sha256 %s\n", m.Payload.Size, m.Payload.SHA256)
	if m.DevKeys != nil {
		fmt.Fprintln(w, "  dev key        included, encrypted (AES-256-GCM, "+m.DevKeys.KDF+")")
	} else {
		fmt.Fprintln(w, "  keys           none (HSM/KMS keys stay in the HSM/KMS; restore with the same --signer)")
	}
	if r.Seconds > 0 {
		fmt.Fprintf(w, "  took           %.3fs\n", r.Seconds)
	}
	return nil
}
