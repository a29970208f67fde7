package auditcli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestEventRecordRendering: an admin event is listed as kind admin with
// its action and its detail embedded as JSON, in every format.
func TestEventRecordRendering(t *testing.T) {
	r := &tier0v1.IssuanceRecord{Seq: 9, Serial: "ec74", SpiffeId: "spiffe://example.org/web", AgentId: "spiffe://example.org/tier0/admin",
		NodeId: "n1", EventAction: "entry.create", EventDetail: []byte(`{"entry":{"id":"e1"}}`)}
	m := RecordMap(r)
	b, _ := json.Marshal(m)
	var back struct {
		Kind   string         `json:"kind"`
		Action string         `json:"event_action"`
		Detail map[string]any `json:"event_detail"`
	}
	if err := json.Unmarshal(b, &back); err != nil || back.Kind != "admin" || back.Action != "entry.create" || back.Detail["entry"] == nil {
		t.Fatalf("json %s: %v", b, err)
	}
	var tbl bytes.Buffer
	p := NewRecordPrinter(&tbl, Table)
	p.Print([]*tier0v1.IssuanceRecord{r})
	if err := p.Flush(); err != nil || !strings.Contains(tbl.String(), "admin entry.create") {
		t.Fatalf("table: %q %v", tbl.String(), err)
	}
	var show bytes.Buffer
	if err := WriteRecord(&show, Table, r); err != nil || !strings.Contains(show.String(), `admin event entry.create, detail {"entry":{"id":"e1"}}`) {
		t.Fatalf("show: %q %v", show.String(), err)
	}
}
