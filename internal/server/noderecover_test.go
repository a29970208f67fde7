package server

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/ca/record"
)

func TestNeedsRenewal(t *testing.T) {
	now := time.Now()
	svid := func(nb, na time.Duration) *x509svid.SVID {
		return &x509svid.SVID{Certificates: []*x509.Certificate{{NotBefore: now.Add(nb), NotAfter: now.Add(na)}}}
	}
	for _, tc := range []struct {
		name string
		s    *x509svid.SVID
		want bool
	}{
		{"none", nil, true},
		{"fresh", svid(-time.Minute, 59*time.Minute), false},
		{"past half life", svid(-40*time.Minute, 20*time.Minute), true},
		{"expired", svid(-2*time.Hour, -time.Hour), true},
	} {
		if got := needsRenewal(tc.s, now); got != tc.want {
			t.Errorf("%s: needsRenewal = %v", tc.name, got)
		}
	}
}

// TestPendingRecords: records issued offline accumulate in the file,
// survive a restart (a reread) intact, and the attempted mark is kept.
func TestPendingRecords(t *testing.T) {
	dir := t.TempDir()
	if p, err := readPendingRecords(dir); err != nil || len(p.Records) != 0 {
		t.Fatalf("no file: %v %v", p, err)
	}
	nb := record.Truncate(time.Now())
	for _, s := range []string{"a1", "b2"} {
		if err := addPendingRecord(dir, &record.Record{Serial: s, SPIFFEID: "spiffe://example.org/tier0/node/n1", NotBefore: nb, CertDER: []byte{1, 2}}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := readPendingRecords(dir)
	if err != nil || len(p.Records) != 2 || p.Attempted || p.Records[1].Serial != "b2" || !p.Records[0].NotBefore.Equal(nb) || string(p.Records[0].CertDER) != "\x01\x02" {
		t.Fatalf("reread: %+v %v", p, err)
	}
	p.Attempted = true
	if err := writePendingRecords(dir, p); err != nil {
		t.Fatal(err)
	}
	if p, err := readPendingRecords(dir); err != nil || !p.Attempted {
		t.Fatalf("attempted mark lost: %+v %v", p, err)
	}
}
