package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/auditcli"
	"github.com/tier0-ca/tier0/internal/tlog"
	"github.com/tier0-ca/tier0/internal/witness"
)

// newWitnessCmd: one witness round over a log, through its server or its record store.
func newWitnessCmd(g *globalFlags) *cobra.Command {
	var name, state, dsn, output string
	var bundles, logKeys []string
	cmd := &cobra.Command{
		Use:   "witness --log-key audit-cert.pem --name NAME --state DIR [--bundle bundle.pem] [--store DSN]",
		Short: "Witness the log: cosign its newest tree checkpoint if it extends the one cosigned before (C2SP tlog-cosignature)",
		Long: `witness fetches the newest signed tree checkpoint, accepts it only when it is signed by
the --log-key audit key certificate (chained to the bundle) and extends the checkpoint it
cosigned last (a consistency proof; a different tree of the same size is a split view, a
smaller one a rollback: both are refused with exit 1), adds its C2SP tlog-cosignature/v1
(Ed25519 key DIR/witness.key, created on first use, public key printed) and writes the
cosigned note to DIR/cosigned.note. Run it from cron or a loop. It talks to the log's
server with an auditor credential (--data-dir, --server, --credential) and publishes the
cosignature back to the log, where 'tier0 audit verify --witness NAME=KEY' and verifiable
exports find it; with --store it reads the record store directly and publishes nothing.
The bundle (--bundle) defaults to DATA/bundle.pem.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(logKeys) == 0 || name == "" || state == "" || (dsn != "" && len(bundles) == 0) {
				return errors.New("--log-key, --name and --state are required, and --bundle with --store")
			}
			certs, err := auditcli.LoadBundles(logKeys)
			if err != nil {
				return fmt.Errorf("--log-key: %w", err)
			}
			var more [][]byte
			for _, c := range certs[1:] {
				more = append(more, c.Raw)
			}
			roots, err := serverRoots(g, bundles)
			if err != nil {
				return err
			}
			key, pub, err := witness.LoadOrCreateKey(filepath.Join(state, "witness.key"))
			if err != nil {
				return err
			}
			w, err := witness.New(witness.Config{Name: name, Key: key, LogCert: certs[0].Raw, LogCerts: more, Roots: roots, StateDir: state})
			if err != nil {
				return err
			}
			var note []byte
			if dsn == "" {
				note, err = witnessRemote(cmd, g, w, name, pub) // auditlog_cmd.go
			} else {
				note, err = witnessStore(cmd, w, dsn)
			}
			if err != nil {
				return err
			}
			c, _ := tlog.ParseCheckpoint(tlog.NoteText(note))
			if output == outJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"origin": c.Origin, "size": c.Size, "root": c.Root,
					"witness": name, "witness_key": hex.EncodeToString(pub), "note": string(note)})
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "cosigned %s size %d as %s (key %x)\n", c.Origin, c.Size, name, []byte(pub))
			_, err = cmd.OutOrStdout().Write(note)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&logKeys, "log-key", nil, "the log's audit key certificate (PEM; repeatable, e.g. one per node with keys of their own): only checkpoints signed by its key are cosigned (a re-issued certificate of the same key matches)")
	fl.StringVar(&name, "name", "", "this witness's name (the cosignature key name)")
	fl.StringVar(&state, "state", "", "state directory: the witness key, the last cosigned checkpoint")
	fl.StringVar(&dsn, "store", "", "read the log's record store DSN (postgres://... or sqlite:PATH) directly instead of the server")
	fl.StringArrayVar(&bundles, "bundle", nil, "trust bundle PEM file (repeatable; default DATA/bundle.pem; required with --store)")
	outputFlag(fl, &output, "output: text (the cosigned note) or json", outText, outJSON)
	return cmd
}

// witnessStore runs one witness round over the record store at dsn.
func witnessStore(cmd *cobra.Command, w *witness.Witness, dsn string) ([]byte, error) {
	ts, closeStore, err := auditcli.OpenTreeStore(cmd.Context(), dsn)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	return w.Step(cmd.Context(), witness.StoreSource{Prover: tlog.Prover{Store: ts}})
}
