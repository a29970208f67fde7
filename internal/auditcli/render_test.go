package auditcli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/server/decisions"
	"github.com/tier0-ca/tier0/storage"
	"github.com/tier0-ca/tier0/storage/storagetest"
)

func writePEM(t *testing.T, certs ...*x509.Certificate) string {
	t.Helper()
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	p := filepath.Join(t.TempDir(), "b.pem")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadPEMCerts(t *testing.T) {
	k := storagetest.NewAuditKey(t)
	good := writePEM(t, k.Root, k.Cert)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.pem")
	_ = os.WriteFile(empty, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	bad := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(bad, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 1, 2}}), 0o600)
	if cs, err := LoadBundles([]string{good, good}); err != nil || len(cs) != 4 || !cs[0].Equal(k.Root) {
		t.Fatalf("LoadBundles = %d certs, %v", len(cs), err)
	}
	for _, tc := range []struct{ path, want string }{
		{empty, "--bundle " + empty + ": no PEM certificates"},
		{bad, "--bundle " + bad + ": x509: malformed tbs certificate"},
		{filepath.Join(dir, "none"), "--bundle: open " + filepath.Join(dir, "none") + ": no such file or directory"},
	} {
		if _, err := LoadBundles([]string{good, tc.path}); err == nil || err.Error() != tc.want {
			t.Errorf("LoadBundles(%s) = %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestParseTimes(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var a, b int64
	if err := ParseTimes(now, TimeFlag{"since", "2h", &a}, TimeFlag{"until", "2026-01-02T15:04:05Z", &b}, TimeFlag{"x", "", nil}); err != nil {
		t.Fatal(err)
	}
	if a != now.Add(-2*time.Hour).Unix() || b != time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC).Unix() {
		t.Fatalf("got %d %d", a, b)
	}
	for in, want := range map[string]string{
		"-1h":                  `--since "-1h": a duration must be positive`,
		"yesterday":            `--since "yesterday": want RFC 3339 (2026-01-02T15:04:05Z) or a duration (1h)`,
		"1969-12-31T00:00:00Z": `--since "1969-12-31T00:00:00Z": outside years 1970-9999`,
	} {
		if _, err := ParseTime("since", in, now); err == nil || err.Error() != want {
			t.Errorf("ParseTime(%q) = %v, want %q", in, err, want)
		}
	}
}

var (
	x509Rec = &tier0v1.IssuanceRecord{Seq: 7, Serial: "4a7a0", SpiffeId: "spiffe://example.org/w", AgentId: "spiffe://example.org/agent/a",
		NotBefore: 1_700_000_000_000_000, NotAfter: 1_700_003_600_000_000, IssuerKeyId: "abcd", PublicKeySha256: "ff00",
		NodeId: "n1", CommittedAt: 1_700_000_001_500_000, Hash: []byte{1, 2}, PrevHash: []byte{3}, CertDer: []byte{0x30}}
	jwtRec = &tier0v1.IssuanceRecord{Seq: 8, Serial: "jti-1", SpiffeId: "spiffe://example.org/w", IssuerKeyId: "jwt:k1",
		PublicKeySha256: "aa", NodeId: "n1", Hash: []byte{9}}
)

func TestRecordPrinter(t *testing.T) {
	tests := []struct{ format, want string }{
		{Table, "SEQ  SERIAL  SPIFFE ID               AGENT                         NOT AFTER             NODE  KIND\n" +
			"7    4a7a0   spiffe://example.org/w  spiffe://example.org/agent/a  2023-11-14T23:13:20Z  n1    x509\n" +
			"8    jti-1   spiffe://example.org/w                                1970-01-01T00:00:00Z  n1    jwt\n"},
		{CSV, "seq,serial,spiffe_id,agent_id,not_before,not_after,issuer_key_id,node_id,committed_at,hash,kind,serial_hex,public_key_sha256,jti,jwt_kid,jwt_token_sha256,event_action,event_detail\n" +
			"7,4a7a0,spiffe://example.org/w,spiffe://example.org/agent/a,2023-11-14T22:13:20Z,2023-11-14T23:13:20Z,abcd,n1,2023-11-14T22:13:21.5Z,0102,x509,04A7A0,ff00,,,,,\n" +
			"8,jti-1,spiffe://example.org/w,,1970-01-01T00:00:00Z,1970-01-01T00:00:00Z,jwt:k1,n1,1970-01-01T00:00:00Z,09,jwt,jti-1,aa,jti-1,k1,aa,,\n"},
		{JSON, `{"agent_id":"spiffe://example.org/agent/a","committed_at":"2023-11-14T22:13:21.5Z","hash":"0102","issuer_key_id":"abcd","jti":"","jwt":false,"jwt_kid":"","jwt_token_sha256":"","kind":"x509","node_id":"n1","not_after":"2023-11-14T23:13:20Z","not_before":"2023-11-14T22:13:20Z","public_key_sha256":"ff00","seq":7,"serial":"4a7a0","serial_hex":"04A7A0","spiffe_id":"spiffe://example.org/w"}` + "\n" +
			`{"agent_id":"","committed_at":"1970-01-01T00:00:00Z","hash":"09","issuer_key_id":"jwt:k1","jti":"jti-1","jwt":true,"jwt_kid":"k1","jwt_token_sha256":"aa","kind":"jwt","node_id":"n1","not_after":"1970-01-01T00:00:00Z","not_before":"1970-01-01T00:00:00Z","public_key_sha256":"aa","seq":8,"serial":"jti-1","serial_hex":"jti-1","spiffe_id":"spiffe://example.org/w"}` + "\n"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		p := NewRecordPrinter(&b, tc.format)
		p.Print([]*tier0v1.IssuanceRecord{x509Rec})
		p.Print([]*tier0v1.IssuanceRecord{jwtRec})
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.format, b.String(), tc.want)
		}
	}
}

func TestWriteRecord(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRecord(&b, Table, x509Rec); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"seq:                7\n", "serial_hex:         04A7A0\n", "prev_hash:          03\n", "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("show lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := WriteRecord(&b, JSON, jwtRec); err != nil || !strings.Contains(b.String(), `"certificate":"(none: JWT-SVID, serial is the jti)"`) {
		t.Fatalf("show json: %v %s", err, b.String())
	}
}

func TestWriteDecisions(t *testing.T) {
	ds := []*tier0v1.AuthzDecision{
		{Id: 1, At: 1_700_000_000_000_000, NodeId: "n1", Caller: "spiffe://e/a", Requested: "spiffe://e/w", Allowed: true, Reason: "entry e1", Code: "OK"},
		{Id: 2, At: 1_700_000_000_000_000, Caller: "spiffe://e/a", Requested: "spiffe://e/x", Reason: "no entry", Code: "PermissionDenied"},
		{Id: 3, At: 1_700_000_000_000_000, Caller: "spiffe://e/a", Requested: "spiffe://e/w", Reason: decisions.FailedPrefix + "signer down", Code: "Unavailable"},
		{Id: 4, At: 1_700_000_000_000_000, Requested: "/tier0.v1.Agent/MintX509SVIDs", Reason: "overloaded", Code: "ResourceExhausted"},
	}
	want := map[string]string{
		Table: "AT                    DECISION  CODE               CALLER        REQUESTED                      REASON\n" +
			"2023-11-14T22:13:20Z  allow     OK                 spiffe://e/a  spiffe://e/w                   entry e1\n" +
			"2023-11-14T22:13:20Z  deny      PermissionDenied   spiffe://e/a  spiffe://e/x                   no entry\n" +
			"2023-11-14T22:13:20Z  fail      Unavailable        spiffe://e/a  spiffe://e/w                   " + decisions.FailedPrefix + "signer down\n" +
			"2023-11-14T22:13:20Z  fail      ResourceExhausted                /tier0.v1.Agent/MintX509SVIDs  overloaded\n",
		CSV: "id,at,node_id,caller,requested,decision,code,reason\n1,2023-11-14T22:13:20Z,n1,spiffe://e/a,spiffe://e/w,allow,OK,entry e1\n" +
			"2,2023-11-14T22:13:20Z,,spiffe://e/a,spiffe://e/x,deny,PermissionDenied,no entry\n3,2023-11-14T22:13:20Z,,spiffe://e/a,spiffe://e/w,fail,Unavailable," + decisions.FailedPrefix + "signer down\n" +
			"4,2023-11-14T22:13:20Z,,,/tier0.v1.Agent/MintX509SVIDs,fail,ResourceExhausted,overloaded\n",
		JSON: `{"at":"2023-11-14T22:13:20Z","caller":"spiffe://e/a","code":"OK","decision":"allow","id":1,"node_id":"n1","reason":"entry e1","requested":"spiffe://e/w"}` + "\n" +
			`{"at":"2023-11-14T22:13:20Z","caller":"spiffe://e/a","code":"PermissionDenied","decision":"deny","id":2,"node_id":"","reason":"no entry","requested":"spiffe://e/x"}` + "\n" +
			`{"at":"2023-11-14T22:13:20Z","caller":"spiffe://e/a","code":"Unavailable","decision":"fail","id":3,"node_id":"","reason":"` + decisions.FailedPrefix + `signer down","requested":"spiffe://e/w"}` + "\n" +
			`{"at":"2023-11-14T22:13:20Z","caller":"","code":"ResourceExhausted","decision":"fail","id":4,"node_id":"","reason":"overloaded","requested":"/tier0.v1.Agent/MintX509SVIDs"}` + "\n",
	}
	for f, w := range want {
		var b bytes.Buffer
		if err := WriteDecisions(&b, f, ds); err != nil || b.String() != w {
			t.Errorf("%s: %v\n%s\nwant:\n%s", f, err, b.String(), w)
		}
	}
}

func TestVerifyOutput(t *testing.T) {
	tests := []struct {
		name      string
		r         *tier0v1.VerifyChainResponse
		allowTail bool
		text, err string
	}{
		{"ok", &tier0v1.VerifyChainResponse{Ok: true, FromSeq: 1, ToSeq: 10, Checked: 10, Checkpoints: 1, LastCheckpointSeq: 10, Head: []byte{0xab}},
			false, "OK: records 1..10 verified (10 records, 1 signed checkpoints, last at seq 10) in 2ms\nhead: ab\n", ""},
		{"tail", &tier0v1.VerifyChainResponse{Ok: true, FromSeq: 1, ToSeq: 12, Checked: 12, Checkpoints: 1, LastCheckpointSeq: 10, AnchorSeq: 5, Head: []byte{0xab}},
			false, "OK: records 1..12 verified (12 records, 1 signed checkpoints, last at seq 10) in 2ms\nchain verified from the signed checkpoint at seq 5\n" +
				"UNVERIFIED: records 11..12 are newer than the newest signed checkpoint (hash chain only)\nhead: ab\n",
			"audit verify: records 11..12 are newer than the newest signed checkpoint (hash chain only): unverified; wait for the next checkpoint or pass --allow-unverified-tail"},
		{"tail allowed", &tier0v1.VerifyChainResponse{Ok: true, FromSeq: 1, ToSeq: 12, Checked: 12, LastCheckpointSeq: 10}, true,
			"OK: records 1..12 verified (12 records, 0 signed checkpoints, last at seq 10) in 2ms\nUNVERIFIED: records 11..12 are newer than the newest signed checkpoint (hash chain only)\nhead: \n", ""},
		{"failed", &tier0v1.VerifyChainResponse{FirstBadSeq: 4, Problem: "modified", Detail: "hash differs", Checked: 3, Checkpoints: 0}, false,
			"FAILED: first bad seq 4: modified\n  hash differs\n  3 records verified before it; 0 checkpoints verified\n", "audit verify FAILED: seq 4: modified"},
		{"decisions ok", &tier0v1.VerifyChainResponse{Ok: true, FromSeq: 1, ToSeq: 10, Checked: 10, Checkpoints: 1, LastCheckpointSeq: 10, Head: []byte{0xab},
			DecisionsChecked: 40, DecisionsTo: 40, DecisionCheckpoints: 3, LastDecisionCheckpoint: 35}, false,
			"OK: records 1..10 verified (10 records, 1 signed checkpoints, last at seq 10) in 2ms\nhead: ab\n" +
				"decisions: 40 verified up to 40 (3 signed decision checkpoints, last at 35)\n" +
				"UNVERIFIED: decisions 36..40 are newer than the newest signed decision checkpoint (hash chain only)\n", ""},
		{"decision deleted", &tier0v1.VerifyChainResponse{Problem: "deleted decision", Detail: "decision 5 is missing: the chain goes from 4 to 6",
			DecisionFirstBad: 5, DecisionsChecked: 4, DecisionCheckpoints: 0}, false,
			"FAILED: decision 5: deleted decision\n  decision 5 is missing: the chain goes from 4 to 6\n  records intact; 4 decisions verified before it; 0 decision checkpoints verified\n",
			"audit verify FAILED: decision 5: deleted decision"},
	}
	for _, tc := range tests {
		var b bytes.Buffer
		WriteVerify(&b, Table, tc.r, 2*time.Millisecond)
		if b.String() != tc.text {
			t.Errorf("%s:\n%s\nwant:\n%s", tc.name, b.String(), tc.text)
		}
		if err := VerdictErr(tc.r, tc.allowTail); (err == nil && tc.err != "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("%s: VerdictErr = %v, want %q", tc.name, err, tc.err)
		}
	}
	var b bytes.Buffer
	WriteVerify(&b, JSON, tests[1].r, time.Second)
	if want := `{"anchor_seq":5,"checked":12,"checkpoints":1,"decision_checkpoints":0,"decision_first_bad":0,"decisions_checked":0,"decisions_to":0,"detail":"","first_bad_seq":0,"from":1,"head":"ab","last_checkpoint_seq":10,"last_decision_checkpoint":0,"ok":true,"problem":"","seconds":1,"to":12,"unverified_from":11,"unverified_to":12}` + "\n"; b.String() != want {
		t.Errorf("json:\n%s\nwant:\n%s", b.String(), want)
	}
}

// auditClient serves ListRecords from recs (newest first) as a server
// does: at most req.Limit records below req.BeforeSeq.
type auditClient struct {
	tier0v1.AuditClient
	recs  []*tier0v1.IssuanceRecord
	calls int
}

func (c *auditClient) ListRecords(_ context.Context, req *tier0v1.ListRecordsRequest, _ ...grpc.CallOption) (*tier0v1.ListRecordsResponse, error) {
	c.calls++
	var out []*tier0v1.IssuanceRecord
	for _, r := range c.recs {
		if (req.GetBeforeSeq() == 0 || r.GetSeq() < req.GetBeforeSeq()) && uint32(len(out)) < req.GetLimit() {
			out = append(out, r)
		}
	}
	return &tier0v1.ListRecordsResponse{Records: out}, nil
}

func TestExportAll(t *testing.T) {
	const n = storage.MaxLimit*2 + 5
	c := &auditClient{}
	for s := n; s > 0; s-- {
		c.recs = append(c.recs, &tier0v1.IssuanceRecord{Seq: uint64(s)})
	}
	for _, tc := range []struct{ limit, want uint32 }{{0, n}, {7, 7}, {storage.MaxLimit + 1, storage.MaxLimit + 1}, {n + 10, n}} {
		c.calls = 0
		var b bytes.Buffer
		p := NewRecordPrinter(&b, CSV)
		req := &tier0v1.ListRecordsRequest{Limit: tc.limit}
		got, err := ExportAll(context.Background(), c, req, p)
		if err != nil || got != tc.want || p.Flush() != nil || req.GetBeforeSeq() != 0 {
			t.Fatalf("limit %d: ExportAll = %d, %v (req %v)", tc.limit, got, err, req)
		}
		lines := strings.Split(strings.TrimSpace(b.String()), "\n")
		if uint32(len(lines)) != tc.want+1 || !strings.HasPrefix(lines[1], fmt.Sprint(n)+",") || !strings.HasPrefix(lines[tc.want], fmt.Sprint(n-int(tc.want)+1)+",") {
			t.Fatalf("limit %d: %d lines, first %q last %q", tc.limit, len(lines), lines[1], lines[len(lines)-1])
		}
	}
}
