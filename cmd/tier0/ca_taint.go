package main

import (
	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// `tier0 ca taint`: mark a replaced root or a JWT key as suspect.
func newCATaintCmd(g *globalFlags) *cobra.Command {
	var jwt bool
	var output string
	cmd := &cobra.Command{
		Use:   "taint ID [--jwt] [-o text|json]",
		Short: "Taint a replaced CA root (or, with --jwt, a JWT signing key): agents re-issue what it signed at their next sync",
		Long: `Taint a key suspected of compromise (SPIRE's LocalAuthority taint). For a CA
root (an ID from 'tier0 ca list'), the root must already be replaced
('tier0 ca prepare' + 'tier0 ca activate'): every agent re-issues the SVIDs
that descend from it at its next sync instead of at half-life, so within
one sync interval nothing in use depends on it. With --jwt, ID is a JWT key
ID (kid, from the bundle's JWT authorities): the node holding the key
replaces it at once and agents drop cached JWT-SVIDs it signed. The mark is
replicated; it cannot be undone (prepare a new key instead).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				kind := "x509"
				if jwt {
					kind = "jwt"
				}
				if _, err := c.Admin().TaintKey(cmd.Context(), &tier0v1.TaintKeyRequest{Kind: kind, Id: args[0]}); err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), output, map[string]string{"kind": kind, "id": args[0], "state": "tainted"},
					"tainted %s key %s: agents re-issue what it signed at their next sync", kind, args[0])
			})
		},
	}
	cmd.Flags().BoolVar(&jwt, "jwt", false, "ID is a JWT signing key ID (kid)")
	outputFlag(cmd.Flags(), &output, "text (one line) or json", outText, outJSON)
	return cmd
}
