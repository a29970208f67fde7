package cliout

import (
	"fmt"
	"io"
	"time"

	"github.com/tier0-ca/tier0/internal/operator"
)

// TokenCreated prints a created join token: the token alone on w and what
// it admits on errw, or with -o json one object with both.
func TokenCreated(w, errw io.Writer, format string, t operator.Token) error {
	r, exp := t.Request, t.ExpiresAt.UTC().Format(time.RFC3339)
	kind, name := "", ""
	switch {
	case r.Auditor != "":
		kind, name = "auditor", r.Auditor
	case r.Admin != "":
		kind, name = "admin", r.Admin
	}
	if format == JSON {
		if kind != "" {
			return PrintJSON(w, map[string]any{"token": t.Token, kind: name, "expires_at": exp})
		}
		return PrintJSON(w, map[string]any{"token": t.Token, "agent": r.Agent, "node": r.Node, "expires_at": exp})
	}
	if _, err := fmt.Fprintln(w, t.Token); err != nil {
		return err
	}
	switch {
	case kind != "":
		fmt.Fprintf(errw, "created a join token for %s %s, valid until %s, works once: tier0 login --token T --server ADDR --data-dir DIR\n", kind, name, exp)
	case r.Node != "":
		fmt.Fprintf(errw, "created a join token for cluster node %s, valid until %s, works once\n", r.Node, exp)
	default:
		fmt.Fprintf(errw, "created a join token for agent %s, valid until %s, works once\n", r.Agent, exp)
	}
	return nil
}
