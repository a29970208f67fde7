package auditcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/auditchain"
	"github.com/tier0-ca/tier0/storage"
)

// addEventFields marks an admin event record (docs/AUDIT.md "Admin
// events") in a record's map: kind admin, its action and its detail (a
// JSON object, embedded as JSON); certificates have neither. For an
// event spiffe_id is what changed and agent_id who changed it.
func addEventFields(m map[string]any, r *tier0v1.IssuanceRecord) {
	if r.GetEventAction() == "" {
		return
	}
	m["kind"], m["jwt"] = storage.KindAdmin, false
	m["event_action"], m["event_detail"] = r.GetEventAction(), json.RawMessage("null")
	if d := r.GetEventDetail(); json.Valid(d) {
		m["event_detail"] = json.RawMessage(d)
	}
}

// tableKind is the KIND column: the kind, and an event's action.
func tableKind(m map[string]any) string {
	if a, _ := m["event_action"].(string); a != "" {
		return storage.KindAdmin + " " + a
	}
	return m["kind"].(string)
}

// Chain is a certificate's chain for `audit show` (FetchChain).
type Chain struct {
	Links []auditchain.Link
	Err   error
}

// FetchChain builds the chain of r's certificate from the server (the
// recorded intermediates and the bundle's roots); empty for records
// without a certificate.
func FetchChain(ctx context.Context, s auditchain.Server, r *tier0v1.IssuanceRecord) Chain {
	if len(r.GetCertDer()) == 0 {
		return Chain{}
	}
	links, err := auditchain.Fetch(ctx, s, r.GetCertDer())
	return Chain{Links: links, Err: err}
}

func (c Chain) addTo(m map[string]any) {
	if c.Links != nil {
		m["chain"] = auditchain.Describe(c.Links)
	}
	if c.Err != nil {
		m["chain_error"] = c.Err.Error()
	}
}

// write prints the issuers after the record (table output).
func (c Chain) write(w io.Writer) error {
	for _, l := range auditchain.Describe(c.Links)[min(1, len(c.Links)):] { // the leaf is printed already
		if _, err := fmt.Fprintf(w, "issuer (%s, seq %v): %s, key ID %s\n%s", l["role"], l["seq"], l["subject"], l["subject_key_id"], l["pem"]); err != nil {
			return err
		}
	}
	if c.Err != nil {
		_, err := fmt.Fprintf(w, "chain: %v\n", c.Err)
		return err
	}
	return nil
}
