package cliout

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// Federations prints `tier0 federation list`: a table or one JSON array.
func Federations(w io.Writer, format string, rels []*tier0v1.FederationRelationship) error {
	if format == JSON {
		out := make([]map[string]any, 0, len(rels))
		for _, r := range rels {
			out = append(out, map[string]any{
				"trust_domain": r.GetTrustDomain(), "endpoint": r.GetEndpoint(), "profile": r.GetProfile(),
				"endpoint_spiffe_id": r.GetEndpointSpiffeId(), "has_bundle": len(r.GetBundle()) > 0,
				"updated_at": r.GetUpdatedAt(), "refresh_hint_seconds": r.GetRefreshHintSeconds(), "last_error": r.GetLastError(),
			})
		}
		return json.NewEncoder(w).Encode(out)
	}
	tw := tabs(w)
	fmt.Fprintln(tw, "TRUST DOMAIN\tENDPOINT\tPROFILE\tBUNDLE UPDATED\tLAST ERROR")
	for _, r := range rels {
		upd := "never"
		if r.GetUpdatedAt() > 0 {
			upd = time.Unix(r.GetUpdatedAt(), 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.GetTrustDomain(), r.GetEndpoint(), r.GetProfile(), upd, r.GetLastError())
	}
	return tw.Flush()
}
