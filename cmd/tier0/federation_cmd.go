package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/cliout"
)

func newFederationCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "federation", Short: "Federate with other SPIFFE trust domains"}
	var rel tier0v1.FederationRelationship
	var bundleFile, output, changeOut string
	add := &cobra.Command{
		Use:   "add --trust-domain TD --endpoint URL --profile https_spiffe|https_web [--endpoint-spiffe-id ID --bundle FILE] [-o text|json]",
		Short: "Add or update a federation relationship; the leader then fetches the peer bundle on its refresh hint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bundleFile != "" {
				raw, err := os.ReadFile(bundleFile)
				if err != nil {
					return fmt.Errorf("--bundle: %w", err)
				}
				rel.Bundle = raw
			}
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				if _, err := tier0v1.NewFederationClient(c).SetFederation(cmd.Context(), &tier0v1.SetFederationRequest{Relationship: &rel}); err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), changeOut, map[string]any{"trust_domain": rel.GetTrustDomain(), "endpoint": rel.GetEndpoint(), "profile": rel.GetProfile()},
					"federated with %s via %s (%s)", rel.GetTrustDomain(), rel.GetEndpoint(), rel.GetProfile())
			})
		},
	}
	fl := add.Flags()
	fl.StringVar(&rel.TrustDomain, "trust-domain", "", "the peer trust domain")
	fl.StringVar(&rel.Endpoint, "endpoint", "", "https URL of the peer's SPIFFE bundle endpoint")
	fl.StringVar(&rel.Profile, "profile", "https_spiffe", "endpoint profile: https_spiffe or https_web")
	fl.StringVar(&rel.EndpointSpiffeId, "endpoint-spiffe-id", "", "https_spiffe: SPIFFE ID the endpoint presents")
	fl.StringVar(&bundleFile, "bundle", "", "initial trust: the peer's bundle (SPIFFE bundle JSON or PEM roots); required for https_spiffe")
	_ = add.MarkFlagRequired("trust-domain")
	_ = add.MarkFlagRequired("endpoint")

	del := &cobra.Command{
		Use:   "delete TD [-o text|json]",
		Short: "Stop federating with a trust domain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				if _, err := tier0v1.NewFederationClient(c).DeleteFederation(cmd.Context(), &tier0v1.DeleteFederationRequest{TrustDomain: args[0]}); err != nil {
					return cliErr(err)
				}
				return printChange(cmd.OutOrStdout(), changeOut, map[string]any{"deleted": args[0]}, "deleted federation with %s", args[0])
			})
		},
	}
	list := &cobra.Command{
		Use:   "list [-o table|json]",
		Short: "List federation relationships and the state of their bundles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOperator(cmd, g, "admin", func(c *client.Client) error {
				resp, err := tier0v1.NewFederationClient(c).ListFederations(cmd.Context(), &tier0v1.ListFederationsRequest{})
				if err != nil {
					return cliErr(err)
				}
				return cliout.Federations(cmd.OutOrStdout(), output, resp.GetRelationships())
			})
		},
	}
	outputFlag(list.Flags(), &output, "table or json (one array)", outTable, outJSON)
	outputFlag(add.Flags(), &changeOut, "text (one line) or json", outText, outJSON)
	outputFlag(del.Flags(), &changeOut, "text (one line) or json", outText, outJSON)
	cmd.AddCommand(add, del, list)
	return cmd
}
