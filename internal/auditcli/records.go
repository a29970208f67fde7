package auditcli

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/proto"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/serial"
)

func usTime(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339Nano) }

// CanonicalSerial is the serial as openssl prints it (storage/serial), or
// s unchanged when it does not parse.
func CanonicalSerial(s string) string {
	if c, err := serial.Canonical(s); err == nil {
		return c
	}
	return s
}

// RecordMap is a record's fields by their JSON/CSV names.
func RecordMap(r *tier0v1.IssuanceRecord) map[string]any {
	m := map[string]any{
		"seq": r.GetSeq(), "serial": r.GetSerial(), "spiffe_id": r.GetSpiffeId(), "agent_id": r.GetAgentId(),
		"not_before": usTime(r.GetNotBefore()), "not_after": usTime(r.GetNotAfter()), "issuer_key_id": r.GetIssuerKeyId(),
		"public_key_sha256": r.GetPublicKeySha256(), "node_id": r.GetNodeId(), "committed_at": usTime(r.GetCommittedAt()),
		"hash": hex.EncodeToString(r.GetHash()), "jwt": len(r.GetCertDer()) == 0,
		"kind": storage.KindOf(r.GetIssuerKeyId()), "serial_hex": CanonicalSerial(r.GetSerial()),
		"jti": "", "jwt_kid": "", "jwt_token_sha256": "",
	}
	if m["kind"] == storage.KindJWT { // a JWT-SVID record: serial is the jti, the key is the signing key
		m["jti"], m["jwt_kid"], m["jwt_token_sha256"] = r.GetSerial(), strings.TrimPrefix(r.GetIssuerKeyId(), "jwt:"), r.GetPublicKeySha256()
	}
	addEventFields(m, r) // events.go
	return m
}

// WriteRecord writes one record in full (`audit show`): every field, the
// previous hash and the certificate as PEM; format is Table or JSON.
func WriteRecord(w io.Writer, format string, r *tier0v1.IssuanceRecord) error {
	return WriteRecordChain(w, format, r, Chain{})
}

// WriteRecordChain is WriteRecord with the certificate's chain (JSON:
// "chain" and "chain_error"; table: each issuer's PEM after the record's).
func WriteRecordChain(w io.Writer, format string, r *tier0v1.IssuanceRecord, chain Chain) error {
	m := RecordMap(r)
	chain.addTo(m)
	m["prev_hash"] = hex.EncodeToString(r.GetPrevHash())
	if len(r.GetCertDer()) > 0 {
		m["certificate"] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.GetCertDer()}))
	} else {
		m["certificate"] = "(none: JWT-SVID, serial is the jti)"
		if r.GetEventAction() != "" {
			m["certificate"] = "(none: admin event " + r.GetEventAction() + ", detail " + string(r.GetEventDetail()) + ")"
		}
	}
	if format == JSON {
		return json.NewEncoder(w).Encode(m)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, k := range []string{"seq", "kind", "serial", "serial_hex", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id",
		"public_key_sha256", "node_id", "committed_at", "prev_hash", "hash"} {
		fmt.Fprintf(tw, "%s:\t%v\n", k, m[k])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprint(w, m["certificate"], "\n"); err != nil {
		return err
	}
	return chain.write(w)
}

// RecordPrinter writes records page by page in one format: Table, JSON
// (JSON lines) or CSV (with a header).
type RecordPrinter struct {
	enc *json.Encoder
	cw  *csv.Writer
	tw  *tabwriter.Writer
	err error
}

// NewRecordPrinter starts a listing on w (the header, for table and CSV).
func NewRecordPrinter(w io.Writer, format string) *RecordPrinter {
	p := &RecordPrinter{}
	switch format {
	case JSON:
		p.enc = json.NewEncoder(w)
	case CSV:
		p.cw = csv.NewWriter(w)
		p.err = p.cw.Write([]string{"seq", "serial", "spiffe_id", "agent_id", "not_before", "not_after", "issuer_key_id", "node_id", "committed_at", "hash",
			"kind", "serial_hex", "public_key_sha256", "jti", "jwt_kid", "jwt_token_sha256", "event_action", "event_detail"})
	default:
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(p.tw, "SEQ\tSERIAL\tSPIFFE ID\tAGENT\tNOT AFTER\tNODE\tKIND")
	}
	return p
}

// Print adds recs; the first write error sticks and Flush returns it.
func (p *RecordPrinter) Print(recs []*tier0v1.IssuanceRecord) {
	for _, r := range recs {
		if p.err != nil {
			return
		}
		m := RecordMap(r)
		switch {
		case p.enc != nil:
			p.err = p.enc.Encode(m)
		case p.cw != nil:
			p.err = p.cw.Write([]string{fmt.Sprint(m["seq"]), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), m["not_before"].(string),
				m["not_after"].(string), r.GetIssuerKeyId(), r.GetNodeId(), m["committed_at"].(string), m["hash"].(string),
				m["kind"].(string), m["serial_hex"].(string), r.GetPublicKeySha256(), m["jti"].(string), m["jwt_kid"].(string), m["jwt_token_sha256"].(string),
				r.GetEventAction(), string(r.GetEventDetail())})
		default:
			fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.GetSeq(), r.GetSerial(), r.GetSpiffeId(), r.GetAgentId(), m["not_after"], r.GetNodeId(), tableKind(m))
		}
	}
}

// Flush ends the listing and returns the first error.
func (p *RecordPrinter) Flush() error {
	if p.err != nil {
		return p.err
	}
	switch {
	case p.cw != nil:
		p.cw.Flush()
		return p.cw.Error()
	case p.tw != nil:
		return p.tw.Flush()
	}
	return nil
}

// ExportAll pages through every record matching req (req.Limit records at
// most, 0: all), newest first, into p, and returns how many it printed.
// It neither modifies req nor flushes p.
func ExportAll(ctx context.Context, c tier0v1.AuditClient, req *tier0v1.ListRecordsRequest, p *RecordPrinter) (uint32, error) {
	q := proto.Clone(req).(*tier0v1.ListRecordsRequest)
	total, want := uint32(0), req.GetLimit()
	for {
		q.Limit = storage.MaxLimit
		if want > 0 {
			q.Limit = min(storage.MaxLimit, want-total)
		}
		resp, err := c.ListRecords(ctx, q)
		if err != nil {
			return total, operator.Err(err)
		}
		recs := resp.GetRecords()
		p.Print(recs)
		total += uint32(len(recs))
		if len(recs) < int(q.Limit) || (want > 0 && total >= want) {
			return total, nil
		}
		q.BeforeSeq = recs[len(recs)-1].GetSeq()
	}
}
