package ca

import (
	"context"
	"encoding/hex"
	"testing"
)

// TestRecordIssuers: with RecordIssuers, the first batch an intermediate
// signs starts with the intermediate's own record (full DER, issued by the
// root), once; an issuer set again keeps its recorded state.
func TestRecordIssuers(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RecordIssuers = true })
	ctx := context.Background()
	for range 3 {
		if _, err := e.ca.MintBatch(ctx, testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}}); err != nil {
			t.Fatal(err)
		}
		if err := e.ca.SetIssuer(e.pki.issuer); err != nil { // as a rotation re-sets it
			t.Fatal(err)
		}
	}
	recs := e.j.records()
	if len(recs) != 4 {
		t.Fatalf("%d records, want the intermediate's and 3 SVIDs", len(recs))
	}
	r := recs[0]
	if string(r.CertDER) != string(e.pki.inter.Raw) || r.IssuerKeyID != hex.EncodeToString(e.pki.root.SubjectKeyId) ||
		r.Serial != e.pki.inter.SerialNumber.Text(16) || r.SPIFFEID != "spiffe://"+testTD.Name() {
		t.Fatalf("intermediate record = %+v", r)
	}
	for _, s := range recs[1:] {
		if s.IssuerKeyID != hex.EncodeToString(e.pki.inter.SubjectKeyId) {
			t.Fatalf("SVID record issuer %s", s.IssuerKeyID)
		}
	}
	// A root issuing directly is in the bundle: no record of it.
	d := newEnv(t, func(c *Config) { c.RecordIssuers = true })
	if err := d.ca.SetIssuer(d.pki.rootIssue); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ca.MintBatch(ctx, testAgent, []Request{{CSR: makeCSR(t, newP256(t), []string{testWLID.String()})}}); err != nil {
		t.Fatal(err)
	}
	if n := len(d.j.records()); n != 1 {
		t.Fatalf("root issuer: %d records, want 1", n)
	}
}
