package main

import (
	"context"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// TestAuditStoreStartErrors: an unreachable DSN and a schema newer than
// the binary stop the server at start with a message saying what to do.
func TestAuditStoreStartErrors(t *testing.T) {
	_, err := runBin("tier0", "server", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--store", "postgres://tier0:secret@127.0.0.1:1/nodb?connect_timeout=2")
	if err == nil {
		t.Fatal("server started with an unreachable store")
	}
	if msg := err.Error()[strings.Index(err.Error(), "exit status"):]; !strings.Contains(msg, "record store: cannot open postgres://xxxxx@127.0.0.1:1/nodb") ||
		strings.Contains(msg, "secret") { // the message (not the test's command line) hides the password
		t.Fatalf("unreachable DSN: %v", err)
	}

	db := filepath.Join(t.TempDir(), "records.db")
	out, err := runBin("tier0", "storage", "migrate", "--store", "sqlite:"+db)
	m := regexp.MustCompile(`schema at version (\d+) \(this binary: (\d+)\)`).FindStringSubmatch(out)
	if err != nil || m == nil || m[1] != m[2] {
		t.Fatalf("storage migrate: %v %s", err, out)
	}
	known := m[2]
	execSQLite(t, db, "INSERT INTO schema_version (version, name, applied_at) VALUES (99, '0099_future.sql', 0)")
	_, err = runBin("tier0", "server", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--store", "sqlite:"+db)
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "database schema version 99 is newer than this binary knows ("+known+")") {
		t.Fatalf("newer schema: %v", err)
	}
	if _, err := runBin("tier0", "storage", "migrate", "--store", "sqlite:"+db); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("storage migrate on a newer schema: %v", err)
	}
}

// TestAuditBadQueries sends malformed filters and huge ranges to the Audit
// service: each is InvalidArgument with a message naming the field.
func TestAuditBadQueries(t *testing.T) {
	data := t.TempDir()
	srv := startServer(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := client.LoadSVIDFiles(filepath.Join(data, "auditor", "svid.pem"), filepath.Join(data, "auditor", "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(ctx, client.Config{Addrs: []string{srv.addr()}, TrustDomain: srv.td(), Bundle: srv.bundle(), SVID: client.NewRotatingSVID(svid), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := c.Audit()
	bad := []struct {
		name string
		call func() error
		want string
	}{
		{"since huge", func() error {
			_, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Since: math.MaxInt64})
			return err
		}, "since"},
		{"until negative", func() error { _, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Until: -1}); return err }, "until"},
		{"until before since", func() error {
			_, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Since: 2000000000, Until: 1000000000})
			return err
		}, "before since"},
		{"spiffe id", func() error { _, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{SpiffeId: "web"}); return err }, "not a SPIFFE ID"},
		{"serial", func() error {
			_, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Serial: "xyz;drop"})
			return err
		}, "not hex"},
		{"issuer", func() error {
			_, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{IssuerKeyId: "'or 1=1"})
			return err
		}, "not hex"},
		{"limit", func() error { _, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Limit: 1 << 30}); return err }, "limit"},
		{"decisions caller", func() error { _, err := a.ListDecisions(ctx, &tier0v1.ListDecisionsRequest{Caller: "x"}); return err }, "not a SPIFFE ID"},
		{"decisions since", func() error {
			_, err := a.ListDecisions(ctx, &tier0v1.ListDecisionsRequest{Since: math.MinInt64})
			return err
		}, "since"},
		{"verify range", func() error {
			_, err := a.VerifyChain(ctx, &tier0v1.VerifyChainRequest{FromSeq: 10, ToSeq: 5})
			return err
		}, "before from_seq"},
	}
	for _, tc := range bad {
		err := tc.call()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument mentioning %q", tc.name, err, tc.want)
		}
	}
	// The widest valid range is fine.
	if _, err := a.ListRecords(ctx, &tier0v1.ListRecordsRequest{Since: 1, Until: maxUnix}); err != nil {
		t.Errorf("widest range: %v", err)
	}
	if _, err := a.VerifyChain(ctx, &tier0v1.VerifyChainRequest{FromSeq: math.MaxUint64}); err != nil {
		t.Errorf("verify beyond the end: %v", err)
	}
	for _, args := range [][]string{{"audit", "list", "--since", "yesterday"}, {"audit", "list", "--until", "-5m"},
		{"audit", "list", "-o", "xml"}, {"audit", "decisions", "--since", "0000-01-01T00:00:00Z"}, {"audit", "verify", "--from", "9", "--to", "3"}} {
		if _, err := srv.cli(args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

const maxUnix = 253402300799
