package client

import tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"

// AuditLog returns the AuditLog service client (tree checkpoints, proofs,
// the verifiable export, witness cosignatures).
func (c *Client) AuditLog() tier0v1.AuditLogClient { return tier0v1.NewAuditLogClient(c) }
