package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/internal/operator"
)

// newLoginCmd is `tier0 login`: a named operator or auditor enrols with a
// join token from `tier0 token create --admin NAME | --auditor NAME`.
func newLoginCmd(g *globalFlags) *cobra.Command {
	var token, bundle, output string
	cmd := &cobra.Command{
		Use:   "login --token T --server ADDR[,ADDR] --data-dir DIR [--bundle FILE]",
		Short: "Enrol as a named operator or auditor: exchange a join token for a credential in DIR (renewed by the CLI at half life)",
		Long: `login writes DIR/server.json, DIR/bundle.pem and DIR/admin or DIR/auditor, so that
every CLI command run with --data-dir DIR acts as spiffe://TD/tier0/admin/NAME (or
.../auditor/NAME). The CLI renews the credential when a command runs past half its
lifetime (1 h by default); one that expired needs a new token. --bundle is the CA's
bundle.pem (default DIR/bundle.pem), obtained from an operator out of band.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "" {
				token = os.Getenv(envPrefix + "LOGIN_TOKEN")
			}
			svid, err := operator.Login(cmd.Context(), operator.LoginOptions{DataDir: g.dataDir, Servers: g.servers,
				TrustDomain: g.td, BundleFile: bundle, Token: token})
			if err != nil {
				return err
			}
			exp := svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339)
			if output == outJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"spiffe_id": svid.ID.String(), "expires_at": exp, "data_dir": g.dataDir})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in as %s (expires %s; the CLI renews it) in %s\n", svid.ID, exp, g.dataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "join token (or env "+envPrefix+"LOGIN_TOKEN)")
	cmd.Flags().StringVar(&bundle, "bundle", "", "PEM file with the CA's roots (default DIR/bundle.pem)")
	outputFlag(cmd.Flags(), &output, "output: text or json", outText, outJSON)
	return cmd
}
