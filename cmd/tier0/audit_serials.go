package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/storage/serial"
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
			serials, err := readSerials(args[0])
			if err != nil {
				return err
			}
			c, err := dialOperator(cmd.Context(), g, "auditor")
			if err != nil {
				return err
			}
			defer c.Close()
			missing, err := missingSerials(cmd.Context(), c, serials, wait, parallel)
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

// readSerials reads one serial a line in any spelling storage/serial
// accepts (blank lines and # comments skipped), without duplicates (two
// spellings of one serial count once), in file order, as written.
func readSerials(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		c, err := serial.Canonical(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not a hex serial: %w", path, line, err)
		}
		if !seen[c] {
			seen[c] = true
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no serials", path)
	}
	return out, nil
}

// missingSerials looks every serial up through the Audit API and returns
// those not found, sorted; with wait > 0 it looks again for the missing
// ones every second until none is missing or wait has passed.
func missingSerials(ctx context.Context, c *client.Client, serials []string, wait time.Duration, parallel int) ([]string, error) {
	deadline := time.Now().Add(wait)
	todo := serials
	for {
		var mu sync.Mutex
		var missing []string
		eg, ectx := errgroup.WithContext(ctx)
		eg.SetLimit(max(parallel, 1))
		for _, s := range todo {
			eg.Go(func() error {
				resp, err := c.Audit().ListRecords(ectx, &tier0v1.ListRecordsRequest{Serial: s, Limit: 1})
				if err != nil {
					return cliErr(err)
				}
				if len(resp.GetRecords()) == 0 {
					mu.Lock()
					missing = append(missing, s)
					mu.Unlock()
				}
				return nil
			})
		}
		if err := eg.Wait(); err != nil {
			return nil, err
		}
		slices.Sort(missing)
		if len(missing) == 0 || !time.Now().Before(deadline) {
			return missing, nil
		}
		todo = missing
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
