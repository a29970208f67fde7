package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/tier0-ca/tier0/internal/operator"
)

// newAuditCheckSerialsCmd: which of the serials a client received (one hex
// serial a line, e.g. from `tier0-loadtest --serials FILE`) are missing
// from the record store. Exit status 1 when any is.
func newAuditCheckSerialsCmd(g *globalFlags) *cobra.Command {
	var output string
	var wait time.Duration
	var parallel int
	cmd := &cobra.Command{
		Use:   "check-serials FILE [--wait 30s]",
		Short: "Tell which serials in FILE (one a line, any spelling: hex, 04:a7:.., dec:123) are not in the record store; exit 1 if any",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			serials, err := operator.ReadSerials(args[0])
			if err != nil {
				return err
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			missing, err := operator.MissingSerials(cmd.Context(), c, serials, wait, parallel)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == outJSON {
				if err := json.NewEncoder(w).Encode(map[string]any{"checked": len(serials), "found": len(serials) - len(missing), "missing": missing}); err != nil {
					return err
				}
			} else {
				for _, s := range missing {
					fmt.Fprintln(w, s)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "checked %d serials: %d in the record store, %d missing\n", len(serials), len(serials)-len(missing), len(missing))
			}
			if len(missing) > 0 {
				return fmt.Errorf("%d of %d serials are not in the record store (records are exported in the background: retry with --wait if the cluster was just busy)", len(missing), len(serials))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&wait, "wait", 0, "look again for missing serials until this long has passed (records reach the store shortly after issuance)")
	fl.IntVar(&parallel, "parallel", 16, "lookups in flight")
	outputFlag(fl, &output, "text (missing serials, one a line) or json", outText, outJSON)
	return cmd
}
