package auditcli

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/server/decisions"
)

// Verdict is a decision's outcome: allow, deny, or fail (allowed, then not
// issued, or refused by a fault or limit of tier0's: decisions.Kind).
func Verdict(d *tier0v1.AuthzDecision) string {
	return decisions.Kind(d.GetAllowed(), d.GetCode(), d.GetReason())
}

// WriteDecisions writes decisions as Table, JSON (JSON lines) or CSV.
func WriteDecisions(w io.Writer, format string, ds []*tier0v1.AuthzDecision) error {
	switch format {
	case JSON:
		enc := json.NewEncoder(w)
		for _, d := range ds {
			if err := enc.Encode(map[string]any{"id": d.GetId(), "at": usTime(d.GetAt()), "node_id": d.GetNodeId(), "caller": d.GetCaller(),
				"requested": d.GetRequested(), "decision": Verdict(d), "code": d.GetCode(), "reason": d.GetReason()}); err != nil {
				return err
			}
		}
		return nil
	case CSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"id", "at", "node_id", "caller", "requested", "decision", "code", "reason"})
		for _, d := range ds {
			_ = cw.Write([]string{fmt.Sprint(d.GetId()), usTime(d.GetAt()), d.GetNodeId(), d.GetCaller(), d.GetRequested(), Verdict(d), d.GetCode(), d.GetReason()})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tDECISION\tCODE\tCALLER\tREQUESTED\tREASON")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", usTime(d.GetAt()), Verdict(d), d.GetCode(), d.GetCaller(), d.GetRequested(), d.GetReason())
	}
	return tw.Flush()
}
