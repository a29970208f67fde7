package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/server"
)

// `tier0 storage`: schema migration and retention of the record store
// (docs/AUDIT.md). These talk to the database directly, not to a server.

func newStorageCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Record store maintenance: migrate the schema, prune old records"}
	var dsn, output string
	cmd.PersistentFlags().StringVar(&dsn, "store", "", "record store DSN: sqlite:PATH or postgres://... (default sqlite:DATA/records.db)")
	storeDSN := func() string {
		if dsn != "" {
			return dsn
		}
		return "sqlite:" + filepath.Join(g.dataDir, "records.db")
	}
	migrate := &cobra.Command{
		Use:   "migrate [--store DSN] [-o text|json]",
		Short: "Apply the schema migrations this binary embeds (the server also does at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := server.OpenStore(cmd.Context(), storeDSN())
			if err != nil {
				return err
			}
			defer s.Close()
			db, bin, err := s.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			return printChange(cmd.OutOrStdout(), output, map[string]any{"schema_version": db, "binary_version": bin},
				"schema at version %d (this binary: %d)", db, bin)
		},
	}
	var before string
	var yes bool
	prune := &cobra.Command{
		Use:   "prune --before T [--store DSN] --yes [-o text|json]",
		Short: "Delete records and decisions older than T, keeping the chain verifiable from the last checkpoint before T",
		Long: `Prune deletes the issuance records before the newest signed checkpoint whose record was
committed before T (that checkpoint and its record stay: 'tier0 audit verify' starts from
its signed head), the checkpoints before it, and the authorization decisions made before T.
Records after the last checkpoint before T are never deleted. See docs/AUDIT.md (retention).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if before == "" {
				return fmt.Errorf("--before is required (RFC 3339, or a duration ago such as 2160h)")
			}
			t, err := parseTimeFlag("before", before, time.Now())
			if err != nil {
				return err
			}
			if !yes {
				return fmt.Errorf("prune deletes audit data before %s for good: pass --yes", t.UTC().Format(time.RFC3339))
			}
			s, err := server.OpenStore(cmd.Context(), storeDSN())
			if err != nil {
				return err
			}
			defer s.Close()
			res, err := s.Prune(cmd.Context(), t)
			if err != nil {
				return err
			}
			v := map[string]any{"before": t.UTC().Format(time.RFC3339), "records": res.Records, "checkpoint_seq": res.Checkpoint, "decisions": res.Decisions}
			if res.Checkpoint == 0 {
				return printChange(cmd.OutOrStdout(), output, v, "no signed checkpoint before %s: no records pruned; %d decisions pruned",
					t.UTC().Format(time.RFC3339), res.Decisions)
			}
			return printChange(cmd.OutOrStdout(), output, v, "pruned %d records (the chain now starts at checkpoint seq %d) and %d decisions",
				res.Records, res.Checkpoint, res.Decisions)
		},
	}
	prune.Flags().StringVar(&before, "before", "", "prune what is older than this time (RFC 3339) or this long ago (e.g. 2160h)")
	prune.Flags().BoolVar(&yes, "yes", false, "really delete")
	for _, c := range []*cobra.Command{migrate, prune} {
		outputFlag(c.Flags(), &output, "text (one line) or json", outText, outJSON)
	}
	cmd.AddCommand(migrate, prune)
	return cmd
}
