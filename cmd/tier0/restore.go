package main

import (
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/internal/restore"
)

// newDeprecatedRestoreCmd is the old top-level `tier0 restore`: hidden,
// it works as before and says on stderr to use `tier0 backup restore`.
func newDeprecatedRestoreCmd(g *globalFlags) *cobra.Command {
	cmd := newRestoreCmd(g)
	cmd.Deprecated = "use `tier0 backup restore` (same flags)"
	return cmd
}

// newRestoreCmd is `tier0 backup restore`.
func newRestoreCmd(g *globalFlags) *cobra.Command {
	f := &restore.Config{}
	var passFile, output string
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data-dir DIR [--force] [--node-id ID] [--trust-domain TD] [--store DSN] [--passphrase-file F]",
		Short: "Bootstrap a new single node (or the first node of a new cluster) from a backup",
		Long: `Verifies the backup, then creates DIR's raft stores, bootstraps a one-voter
cluster and installs the backup's snapshot with raft's user restore. Start the
node afterwards with ` + "`tier0 server --data-dir DIR`" + ` (same --trust-domain, and the
same --signer for an HSM/KMS key); further nodes join it as usual.

With --store (the record store the old cluster exported to), records that
reached the store after the backup was taken are verified to continue the
backup's hash chain and the journal head moves to the store's last record,
so issuance continues the chain the store holds, in the same lineage.

Without --store the restored journal may have lost records the old store
holds, so it starts a new lineage (same cluster ID, new lineage ID, starting
after the backup's exported seq): the old store refuses it, naming both
lineages. Point the restored node at a new, empty record store, or restore
again with --store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.DataDir, f.Logger = g.dataDir, g.logger()
			if passFile != "" {
				var err error
				if f.Passphrase, err = readPassphrase(passFile); err != nil {
					return err
				}
			}
			res, err := restore.Run(cmd.Context(), *f)
			if err != nil {
				return err
			}
			return cliout.Restored(cmd.OutOrStdout(), output, f.From, g.dataDir, res)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.From, "from", "", "backup file (tier0 backup create)")
	fl.BoolVar(&f.Force, "force", false, "restore into a non-empty data dir: replaces its raft state (raft/), keeps records.db")
	fl.StringVar(&f.NodeID, "node-id", "", "node ID of the restored node (default: the backup's)")
	fl.StringVar(&f.TrustDomain, "trust-domain", "", "refuse a backup of any other trust domain")
	fl.StringVar(&passFile, "passphrase-file", "", "passphrase of a backup made with --include-dev-key: restores the DEV-ONLY soft key")
	fl.StringVar(&f.Store, "store", "", "record store the old cluster exported to: catch the journal head up to it (sqlite:PATH or postgres://...)")
	fl.StringVar(&f.RaftAddr, "raft-addr", "", "raft address this node will use in a cluster (recorded in the raft configuration); empty: single node")
	outputFlag(fl, &output, "text (what it restored, and the next step) or json", outText, outJSON)
	_ = cmd.MarkFlagRequired("from")
	return cmd
}
