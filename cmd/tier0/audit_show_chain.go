package main

import (
	"context"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/auditcli"
)

// showServer joins the two services the chain of `audit show` reads.
type showServer struct {
	tier0v1.AuditClient
	tier0v1.AgentClient
}

func chainOf(ctx context.Context, c *client.Client, r *tier0v1.IssuanceRecord) auditcli.Chain {
	return auditcli.FetchChain(ctx, showServer{c.Audit(), c.Agent()}, r)
}
