package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/internal/operator"
)

// operator is where the CLI's commands find the server (--data-dir,
// --server, --trust-domain-of-server, --credential).
func (g *globalFlags) operator() operator.Options {
	return operator.Options{DataDir: g.dataDir, Servers: g.servers, TrustDomain: g.td, CredDir: g.credDir}
}

// dialOperator connects with the credential in DATA/<role> (or --credential).
func dialOperator(ctx context.Context, g *globalFlags, role string) (*client.Client, error) {
	return operator.Dial(ctx, g.operator(), role)
}

// withOperator runs fn with a client authenticated by DATA/<role>.
func withOperator(cmd *cobra.Command, g *globalFlags, role string, fn func(c *client.Client) error) error {
	c, err := dialOperator(cmd.Context(), g, role)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// cliErr turns a gRPC status into a one-line message.
var cliErr = operator.Err
