package operator

import (
	"context"
	"time"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TokenRequest is `tier0 token create`: a join token for an agent (Agent),
// a cluster node (Node), or a named operator (Admin or Auditor; these win).
type TokenRequest struct {
	Agent, Node, Admin, Auditor string
	TTL                         time.Duration
}

// Token is a created join token and whom it admits.
type Token struct {
	Token     string
	ExpiresAt time.Time
	Request   TokenRequest
}

// CreateToken creates the join token r asks for (gRPC errors in one line).
func CreateToken(ctx context.Context, c *client.Client, r TokenRequest) (Token, error) {
	ttl := int64(r.TTL / time.Second)
	var tok string
	var exp int64
	if r.Admin != "" || r.Auditor != "" {
		kind, name := tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, r.Admin
		if r.Auditor != "" {
			kind, name = tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR, r.Auditor
		}
		resp, err := tier0v1.NewAgentAdminClient(c).CreateToken(ctx, &tier0v1.CreateTokenRequest{Kind: kind, Name: name, TtlSeconds: ttl})
		if err != nil {
			return Token{}, Err(err)
		}
		tok, exp = resp.GetToken(), resp.GetExpiresAt()
	} else {
		resp, err := c.Admin().CreateJoinToken(ctx, &tier0v1.CreateJoinTokenRequest{Agent: r.Agent, Node: r.Node, TtlSeconds: ttl})
		if err != nil {
			return Token{}, Err(err)
		}
		tok, exp = resp.GetToken(), resp.GetExpiresAt()
	}
	return Token{Token: tok, ExpiresAt: time.Unix(exp, 0).UTC(), Request: r}, nil
}
