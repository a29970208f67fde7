package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/cliout"
	"github.com/tier0-ca/tier0/internal/operator"
)

func newBackupCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Consistent backups of the replicated CA state (create, verify, restore)"}
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
			res, err := operator.BackupFromLeader(cmd.Context(), g.operator(), out, devKey, pass)
			if err != nil {
				return err
			}
			return cliout.Backup(cmd.OutOrStdout(), output, "wrote backup %s", res)
		},
	}
	create.Flags().StringVar(&out, "out", "", "backup file to write (0600)")
	create.Flags().BoolVar(&devKey, "include-dev-key", false, "also store the DEV-ONLY soft root key files, encrypted (never HSM/KMS or delegated keys)")
	create.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the passphrase that encrypts the dev key (with --include-dev-key)")
	outputFlag(create.Flags(), &output, "text or json", outText, outJSON)
	_ = create.MarkFlagRequired("out")
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Check a backup's checksum and manifest, parse its snapshot and check the journal chain to the head",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, info, err := backupfile.Verify(args[0])
			if err != nil {
				return err
			}
			defer b.Close()
			m := b.Manifest
			m.State.SoftKeyRoots = backupfile.SoftKeyRoots(info.CARoots) // also for backups made before the manifest named them
			return cliout.Backup(cmd.OutOrStdout(), output, "backup %s: OK", operator.BackupResult{File: args[0], Manifest: m})
		},
	}
	outputFlag(verify.Flags(), &output, "text or json", outText, outJSON)
	cmd.AddCommand(create, verify, newRestoreCmd(g))
	return cmd
}

// readPassphrase is --passphrase-file (backup create, backup restore).
func readPassphrase(path string) ([]byte, error) {
	p, err := backupfile.ReadPassphrase(path)
	if err != nil {
		return nil, fmt.Errorf("--passphrase-file: %w", err)
	}
	return p, nil
}
