package cliout

import (
	"bytes"
	"testing"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/operator"
	"github.com/tier0-ca/tier0/internal/restore"
)

func TestCARoots(t *testing.T) {
	roots := func() *tier0v1.ListCARootsResponse {
		return &tier0v1.ListCARootsResponse{SigningMode: "delegated", Roots: []*tier0v1.CARoot{
			{Id: "r1", State: "published-old", Tainted: true, NotAfter: 3600, KeyId: "soft:ca/root.key", CertDer: []byte{1},
				Nodes: []*tier0v1.CARootNode{{Node: "n1", State: "active"}, {Node: "n2", State: "prepared (no key: open failed)"}}},
			{Id: "r2", State: "active", NotAfter: 7200, KeyId: "pkcs11:x"},
		}}
	}
	var out, errw bytes.Buffer
	if err := CARoots(&out, &errw, Table, roots()); err != nil {
		t.Fatal(err)
	}
	golden(t, "table", out.String(), `ID  STATE                  NODES                             NOT_AFTER             KEY_ID
r1  published-old,tainted  n1=active n2=prepared(not-ready)  1970-01-01T01:00:00Z  soft:ca/root.key
r2  active                 -                                 1970-01-01T02:00:00Z  pkcs11:x
`)
	golden(t, "stderr", errw.String(), "signing mode of the serving node: delegated\n")
	out.Reset()
	if err := CARoots(&out, &errw, JSON, roots()); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out.Bytes(), []byte("cert_der\": \"")) || !bytes.Contains(out.Bytes(), []byte(`"signing_mode": "delegated"`)) {
		t.Errorf("json: %s", out.String())
	}

	out.Reset()
	errw.Reset()
	if err := CARootPrepared(&out, &errw, Text, roots().Roots[1]); err != nil {
		t.Fatal(err)
	}
	golden(t, "prepared", out.String()+errw.String(),
		"r2\nprepared root r2 (key pkcs11:x): it is in the bundle now; distribute the bundle, then `tier0 ca activate r2`\n")
	out.Reset()
	errw.Reset()
	if err := CARootActivated(&out, &errw, Text, &tier0v1.ActivateCARootResponse{Warning: "forced", Root: roots().Roots[1]}); err != nil {
		t.Fatal(err)
	}
	golden(t, "activated", out.String()+errw.String(),
		"activated root r2 (key pkcs11:x): it signs new SVIDs from now on\nWARNING: forced\n")
}

func TestFederations(t *testing.T) {
	rels := []*tier0v1.FederationRelationship{
		{TrustDomain: "other.org", Endpoint: "https://b.other.org", Profile: "https_spiffe", UpdatedAt: 60, Bundle: []byte("x")},
		{TrustDomain: "web.org", Endpoint: "https://web.org/b", Profile: "https_web", LastError: "dial: refused"},
	}
	golden(t, "table", render(t, func(b *bytes.Buffer) error { return Federations(b, Table, rels) }),
		`TRUST DOMAIN  ENDPOINT             PROFILE       BUNDLE UPDATED        LAST ERROR
other.org     https://b.other.org  https_spiffe  1970-01-01T00:01:00Z  
web.org       https://web.org/b    https_web     never                 dial: refused
`)
	golden(t, "json", render(t, func(b *bytes.Buffer) error { return Federations(b, JSON, rels[:1]) }),
		`[{"endpoint":"https://b.other.org","endpoint_spiffe_id":"","has_bundle":true,"last_error":"","profile":"https_spiffe","refresh_hint_seconds":0,"trust_domain":"other.org","updated_at":60}]`+"\n")
}

func TestBackupAndRestored(t *testing.T) {
	var m backupfile.Manifest
	m.TrustDomain, m.NodeID, m.CreatedAt = "example.org", "n1", time.Unix(60, 0).UTC()
	m.Raft.Index, m.Raft.Term = 10, 2
	m.Journal.Seq, m.Journal.Head, m.Journal.ExportedSeq, m.Journal.Unexported, m.Journal.LastCommit = 5, "abcd", 4, 1, time.Unix(61, 5e8).UTC()
	m.State.Entries, m.State.Tokens, m.State.BundleRoots, m.State.CARoots, m.State.SoftKeyRoots = 3, 1, 2, 2, []string{"r1"}
	m.Payload.Size, m.Payload.SHA256 = 100, "ff"
	golden(t, "backup", render(t, func(b *bytes.Buffer) error {
		return Backup(b, Text, "wrote backup %s", operator.BackupResult{File: "b.tier0", Manifest: m, Seconds: 0.25})
	}), `wrote backup b.tier0
  trust domain   example.org (taken on node n1 at 1970-01-01T00:01:00Z)
  raft           index 10, term 2
  journal        seq 5, head abcd, exported 4, unexported 1, last commit 1970-01-01T00:01:01.5Z
  state          3 entries, 1 tokens, 2 bundle roots, 2 CA roots
  payload        100 bytes, sha256 ff
  keys           NOT included: the DEV-ONLY soft key of root r1 stays in the server's DATA/ca; without it a restore cannot sign (add --include-dev-key --passphrase-file F, or keep a copy of the key file)
  took           0.250s
`)
	m.State.SoftKeyRoots, m.Journal.Lineage = nil, "c1/l2"
	got := render(t, func(b *bytes.Buffer) error {
		return Backup(b, Text, "backup %s: OK", operator.BackupResult{File: "b.tier0", Manifest: m})
	})
	golden(t, "verify", got[bytes.Index([]byte(got), []byte("  lineage")):], `  lineage        c1/l2
  state          3 entries, 1 tokens, 2 bundle roots, 2 CA roots
  payload        100 bytes, sha256 ff
  keys           none (HSM/KMS keys stay in the HSM/KMS; restore with the same --signer)
`)

	res := restore.Result{NodeID: "n9", TrustDomain: "example.org", BackupSeq: 5, CaughtUp: 2, Seq: 7, Head: "beef", Entries: 3, Tokens: 1,
		BundleRoots: 2, DevKeys: 1, Lineage: "c1/l2", Warnings: []string{"new lineage"}}
	golden(t, "restored", render(t, func(b *bytes.Buffer) error { return Restored(b, Text, "b.tier0", "/d", res) }),
		`restored b.tier0 into /d as node n9
  journal  seq 7, head beef (backup seq 5; 2 records caught up from the store)
  state    3 entries, 1 tokens, 2 bundle roots
  lineage  c1/l2
  dev key  1 DEV-ONLY soft key file(s) restored (0600)
  WARNING  new lineage
next: tier0 server --data-dir /d --node-id n9 --trust-domain example.org
`)
}
