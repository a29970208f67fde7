package cliout

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// EntryJSON is a registration entry as a JSON object.
func EntryJSON(e *tier0v1.Entry) map[string]any {
	return map[string]any{"id": e.GetId(), "agent": e.GetAgent(), "spiffe_id": e.GetSpiffeId(), "ttl": entryTTL(e).String(),
		"selectors": nonNil(e.GetSelectors()), "federates_with": nonNil(e.GetFederatesWith()), "node_selectors": nonNil(e.GetNodeSelectors())}
}

func entryTTL(e *tier0v1.Entry) time.Duration { return time.Duration(e.GetTtlSeconds()) * time.Second }

// EntryCreated prints what `tier0 entry create` made: one line, or the
// entry as JSON.
func EntryCreated(w io.Writer, format string, e *tier0v1.Entry) error {
	extras := ""
	if len(e.GetNodeSelectors()) > 0 {
		extras += ", node selectors " + strings.Join(e.GetNodeSelectors(), ",")
	}
	if len(e.GetSelectors()) > 0 {
		extras += ", selectors " + strings.Join(e.GetSelectors(), ",")
	}
	if len(e.GetFederatesWith()) > 0 {
		extras += ", federates with " + strings.Join(e.GetFederatesWith(), ",")
	}
	who := "agent " + e.GetAgent()
	if e.GetAgent() == "" && len(e.GetNodeSelectors()) > 0 {
		who = "every agent node-attested with those selectors" // named in extras
	}
	return Change(w, format, EntryJSON(e), "created entry %s: %s may get %s for %s%s",
		e.GetId(), who, e.GetSpiffeId(), entryTTL(e), extras)
}

// Entries prints `tier0 entry list`: a table, one JSON array or CSV.
func Entries(w io.Writer, format string, entries []*tier0v1.Entry) error {
	switch format {
	case JSON:
		out := make([]map[string]any, 0, len(entries))
		for _, e := range entries {
			out = append(out, EntryJSON(e))
		}
		return json.NewEncoder(w).Encode(out)
	case CSV:
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"id", "agent", "spiffe_id", "ttl", "selectors", "federates_with", "node_selectors"})
		for _, e := range entries {
			_ = cw.Write([]string{e.GetId(), e.GetAgent(), e.GetSpiffeId(), entryTTL(e).String(),
				strings.Join(e.GetSelectors(), " "), strings.Join(e.GetFederatesWith(), " "), strings.Join(e.GetNodeSelectors(), " ")})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabs(w)
	fmt.Fprintln(tw, "ID\tAGENT\tSPIFFE ID\tTTL\tSELECTORS\tFEDERATES WITH")
	for _, e := range entries {
		agent := e.GetAgent()
		if ns := e.GetNodeSelectors(); len(ns) > 0 {
			agent = "node:" + strings.Join(ns, "+")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), agent, e.GetSpiffeId(), entryTTL(e),
			strings.Join(e.GetSelectors(), ","), strings.Join(e.GetFederatesWith(), ","))
	}
	return tw.Flush()
}
