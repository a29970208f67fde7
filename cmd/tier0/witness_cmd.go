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

// newWitnessCmd: one witness round over a log's record store.
func newWitnessCmd() *cobra.Command {
	var logKey, name, state, dsn, output string
	var bundles []string
	cmd := &cobra.Command{
		Use:   "witness --log-key audit-cert.pem --name NAME --state DIR --store DSN --bundle bundle.pem",
		Short: "Witness the log: cosign its newest tree checkpoint if it extends the one cosigned before (C2SP tlog-cosignature)",
		Long: `witness fetches the newest signed tree checkpoint, accepts it only when it is signed by
the --log-key audit key certificate (chained to the bundle) and extends the checkpoint it
cosigned last (a consistency proof; a different tree of the same size is a split view, a
smaller one a rollback: both are refused with exit 1), adds its C2SP tlog-cosignature/v1
(Ed25519 key DIR/witness.key, created on first use, public key printed) and writes the
cosigned note to DIR/cosigned.note. Run it from cron or a loop. It reads the log's record
store (--store); fetching through a server is not available yet. An auditor requires
cosignatures with 'tier0 audit verify --export FILE --witness NAME=KEY --cosigned NOTE'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if logKey == "" || name == "" || state == "" || dsn == "" || len(bundles) == 0 {
				return errors.New("--log-key, --name, --state, --store and --bundle are required")
			}
			certs, err := auditcli.LoadPEMCerts(logKey)
			if err != nil {
				return fmt.Errorf("--log-key: %w", err)
			}
			roots, err := auditcli.LoadBundles(bundles)
			if err != nil {
				return err
			}
			key, pub, err := witness.LoadOrCreateKey(filepath.Join(state, "witness.key"))
			if err != nil {
				return err
			}
			w, err := witness.New(witness.Config{Name: name, Key: key, LogCert: certs[0].Raw, Roots: roots, StateDir: state})
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ts, closeStore, err := auditcli.OpenTreeStore(ctx, dsn)
			if err != nil {
				return err
			}
			defer closeStore()
			note, err := w.Step(ctx, witness.StoreSource{Prover: tlog.Prover{Store: ts}})
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
	fl.StringVar(&logKey, "log-key", "", "the log's audit key certificate (PEM): only checkpoints it signed are cosigned")
	fl.StringVar(&name, "name", "", "this witness's name (the cosignature key name)")
	fl.StringVar(&state, "state", "", "state directory: the witness key, the last cosigned checkpoint")
	fl.StringVar(&dsn, "store", "", "the log's record store DSN (postgres://... or sqlite:PATH)")
	fl.StringArrayVar(&bundles, "bundle", nil, "trust bundle PEM file (repeatable)")
	outputFlag(fl, &output, "output: text (the cosigned note) or json", outText, outJSON)
	return cmd
}
