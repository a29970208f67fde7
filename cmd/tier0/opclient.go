package main

import (
	"context"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

// --agent means an agent everywhere: its NAME, or its full SPIFFE ID
// spiffe://TD/tier0/agent/NAME (as logs, audit records and decisions show
// it), which must be in the server's trust domain.

// agentFlag adds --agent to fs, stored in *p; resolve it with
// (*globalFlags).agentName or agentID before use.
func agentFlag(fs *pflag.FlagSet, p *string, usage string) {
	fs.StringVar(p, "agent", "", usage+": the agent NAME, or its SPIFFE ID spiffe://TD/tier0/agent/NAME")
}

// agentName resolves --agent s against the server's trust domain
// (--trust-domain-of-server, else DATA/server.json).
func (g *globalFlags) agentName(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	return operator.AgentName(g.operator().TrustDomainName(), s)
}

// agentID is operator.AgentID in the server's trust domain.
func (g *globalFlags) agentID(s string) (string, error) {
	return operator.AgentID(g.operator().TrustDomainName(), s)
}
