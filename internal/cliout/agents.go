package cliout

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// ParseKind is --kind of the agent commands: agent, admin, auditor, or
// all (all is true).
func ParseKind(s string) (kind tier0v1.SubjectKind, all bool, err error) {
	switch s {
	case "agent":
		return tier0v1.SubjectKind_SUBJECT_KIND_AGENT, false, nil
	case "admin":
		return tier0v1.SubjectKind_SUBJECT_KIND_ADMIN, false, nil
	case "auditor":
		return tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR, false, nil
	case "all":
		return 0, true, nil
	}
	return 0, false, fmt.Errorf("--kind %q: want agent, admin, auditor or all", s)
}

// ParseOneKind is ParseKind without all (for commands on one subject).
func ParseOneKind(s string) (tier0v1.SubjectKind, error) {
	k, all, err := ParseKind(s)
	if err != nil || all {
		return 0, fmt.Errorf("--kind: want agent, admin or auditor")
	}
	return k, nil
}

// KindName is the --kind name of k.
func KindName(k tier0v1.SubjectKind) string {
	switch k {
	case tier0v1.SubjectKind_SUBJECT_KIND_ADMIN:
		return "admin"
	case tier0v1.SubjectKind_SUBJECT_KIND_AUDITOR:
		return "auditor"
	}
	return "agent"
}

// AgentJSON is one registry subject as a JSON object.
func AgentJSON(a *tier0v1.AgentInfo) map[string]any {
	return map[string]any{"name": a.GetName(), "kind": KindName(a.GetKind()), "spiffe_id": a.GetSpiffeId(), "state": a.GetState(),
		"generation": a.GetGeneration(), "selectors": nonNil(a.GetSelectors()), "attested_at": UnixRFC3339(a.GetAttestedAt()), "attested_node": a.GetAttestedNode(),
		"serial": a.GetSerial(), "expires_at": UnixRFC3339(a.GetNotAfter()), "renewed_at": UnixRFC3339(a.GetRenewedAt()),
		"renewed_node": a.GetRenewedNode(), "state_by": a.GetStateBy(), "state_at": UnixRFC3339(a.GetStateAt())}
}

// Agents prints `tier0 agent list`: a table, one JSON array or CSV.
func Agents(w io.Writer, format string, as []*tier0v1.AgentInfo) error {
	switch format {
	case JSON:
		out := make([]map[string]any, 0, len(as))
		for _, a := range as {
			out = append(out, AgentJSON(a))
		}
		return json.NewEncoder(w).Encode(out)
	case CSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"spiffe_id", "kind", "state", "generation", "serial", "expires_at", "renewed_at", "renewed_node", "selectors"})
		for _, a := range as {
			_ = cw.Write([]string{a.GetSpiffeId(), KindName(a.GetKind()), a.GetState(), fmt.Sprint(a.GetGeneration()), a.GetSerial(),
				UnixRFC3339(a.GetNotAfter()), UnixRFC3339(a.GetRenewedAt()), a.GetRenewedNode(), strings.Join(a.GetSelectors(), " ")})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabs(w)
	fmt.Fprintln(tw, "SPIFFE ID\tSTATE\tATTESTATION\tSERIAL\tEXPIRES\tLAST RENEWAL\tNODE\tSELECTORS")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", a.GetSpiffeId(), a.GetState(), a.GetGeneration(), a.GetSerial(),
			UnixRFC3339(a.GetNotAfter()), UnixRFC3339(a.GetRenewedAt()), a.GetRenewedNode(), strings.Join(a.GetSelectors(), ","))
	}
	return tw.Flush()
}

// Agent prints `tier0 agent show`: one JSON object (one line) or a
// two-column table.
func Agent(w io.Writer, format string, a *tier0v1.AgentInfo) error {
	if format == JSON {
		return json.NewEncoder(w).Encode(AgentJSON(a))
	}
	tw := tabs(w)
	for _, row := range [][2]string{
		{"spiffe id", a.GetSpiffeId()}, {"kind", KindName(a.GetKind())}, {"state", a.GetState()},
		{"attestation", fmt.Sprint(a.GetGeneration())}, {"attested at", UnixRFC3339(a.GetAttestedAt())}, {"attested on", a.GetAttestedNode()},
		{"selectors", strings.Join(a.GetSelectors(), ",")}, {"svid serial", a.GetSerial()}, {"svid expires", UnixRFC3339(a.GetNotAfter())},
		{"last renewal", UnixRFC3339(a.GetRenewedAt())}, {"renewed on", a.GetRenewedNode()},
		{"state set by", a.GetStateBy()}, {"state set at", UnixRFC3339(a.GetStateAt())},
	} {
		fmt.Fprintf(tw, "%s\t%s\n", row[0], row[1])
	}
	return tw.Flush()
}

// AgentState prints what `tier0 agent evict|ban|unban` changed.
func AgentState(w io.Writer, format string, a *tier0v1.AgentInfo) error {
	if format == JSON {
		return json.NewEncoder(w).Encode(AgentJSON(a))
	}
	_, err := fmt.Fprintf(w, "%s is %s (attestation %d)\n", a.GetSpiffeId(), a.GetState(), a.GetGeneration())
	return err
}

// Tokens prints `tier0 token list`: a table, one JSON array or CSV.
func Tokens(w io.Writer, format string, ts []*tier0v1.TokenInfo) error {
	switch format {
	case JSON:
		out := make([]map[string]any, 0, len(ts))
		for _, t := range ts {
			out = append(out, map[string]any{"hash_prefix": t.GetHashPrefix(), "subject": t.GetSubject(), "expires_at": UnixRFC3339(t.GetExpiresAt()),
				"used": t.GetUsed(), "creator": t.GetCreator(), "created_at": UnixRFC3339(t.GetCreatedAt())})
		}
		return json.NewEncoder(w).Encode(out)
	case CSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"hash_prefix", "subject", "expires_at", "used", "creator", "created_at"})
		for _, t := range ts {
			_ = cw.Write([]string{t.GetHashPrefix(), t.GetSubject(), UnixRFC3339(t.GetExpiresAt()), fmt.Sprint(t.GetUsed()), t.GetCreator(), UnixRFC3339(t.GetCreatedAt())})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabs(w)
	fmt.Fprintln(tw, "HASH PREFIX\tSUBJECT\tEXPIRES\tUSED\tCREATOR")
	for _, t := range ts {
		used := "unused"
		if t.GetUsed() {
			used = "used"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.GetHashPrefix(), t.GetSubject(), UnixRFC3339(t.GetExpiresAt()), used, t.GetCreator())
	}
	return tw.Flush()
}
