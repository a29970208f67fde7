package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/signer"
	"github.com/tier0-ca/tier0/storage"
)

// TestClusterRestartsAfterLongStop: a cluster stopped for longer than its
// node SVIDs live (1 h; here the stored SVIDs are replaced by expired
// ones, as a long stop leaves them) re-forms: each member re-issues its
// node SVID from the CA root key before it joins raft, and commits the
// record once there is a leader. A member that cannot open the CA key
// refuses to start, saying why and what to do, rather than present an
// expired SVID its peers refuse (ha's TestTLSTransportRefusesNonNodes
// shows they do).
func TestClusterRestartsAfterLongStop(t *testing.T) {
	c := startCluster(t, 3)
	td := c.nodes[0].td()
	rootCert := c.nodes[0].bundle().X509Authorities()[0]
	for _, p := range c.nodes {
		p.stop()
	}
	for i, p := range c.nodes {
		expireNodeSVID(t, p.dataDir, spiffeid.RequireFromSegments(td, "tier0", "node", nodeName(i)), rootCert)
	}

	// node3 without access to the CA key: refuses to start.
	key3 := filepath.Join(c.nodes[2].dataDir, "ca", "root.key")
	if err := os.Rename(key3, key3+".away"); err != nil {
		t.Fatal(err)
	}
	c.nodes[2].launch()
	select {
	case <-c.nodes[2].exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("node3 without the CA key did not exit:\n%s", c.nodes[2].log.String())
	}
	if c.nodes[2].cmd.ProcessState.ExitCode() == 0 {
		t.Fatal("node3 exited 0")
	}
	for _, w := range []string{"could not re-issue one from the CA root key", "tier0 token create --node node3", "the other members refuse it"} {
		if !strings.Contains(c.nodes[2].log.String(), w) {
			t.Fatalf("node3's log lacks %q:\n%s", w, c.nodes[2].log.String())
		}
	}
	if err := os.Rename(key3+".away", key3); err != nil {
		t.Fatal(err)
	}

	// Every member again, last first.
	for i := 2; i >= 0; i-- {
		c.nodes[i].log = nil
		c.nodes[i].launch()
	}
	for _, p := range c.nodes {
		p.waitReady(p.exited)
		if !strings.Contains(p.log.String(), "node SVID re-issued offline from the CA root key") {
			t.Fatalf("%s did not re-issue its node SVID:\n%s", p.dataDir, p.log.String())
		}
	}
	ag := c.agent("a1", clusterID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := ag.Agent().MintX509SVIDs(ctx, &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csrFor(t, p256(t), []string{clusterID}, nil, nil)}}})
	if err != nil || resp.GetResults()[0].GetError() != nil {
		t.Fatalf("mint after the long stop: %v %v", err, resp)
	}

	// The offline node SVIDs (signed by the root itself; the others by
	// intermediates) are in the journal, hence in the store, once each.
	ctx = context.Background()
	st, err := storage.Open(ctx, "sqlite:"+c.store)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var recs []string
	var qerr error
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []*record.Record
		got, qerr = st.Query(ctx, storage.Filter{IssuerKeyID: hex.EncodeToString(rootCert.SubjectKeyId)})
		recs = recs[:0]
		for _, r := range got {
			if strings.Contains(r.SPIFFEID, "/tier0/node/") { // not the intermediates
				recs = append(recs, r.SPIFFEID)
			}
		}
		if qerr == nil && len(recs) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records issued by the root itself: %v %v", recs, qerr)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	for _, p := range c.nodes {
		if _, err := os.Stat(filepath.Join(p.dataDir, "node", "pending-records.json")); !os.IsNotExist(err) {
			t.Fatalf("%s: pending records left: %v", p.dataDir, err)
		}
	}
	// The chain, with the offline SVIDs' certificates, verifies.
	if out, err := c.nodes[0].cli("audit", "verify", "--allow-unverified-tail", "-o", "json"); err != nil || !parseVerify(t, out).OK {
		t.Fatalf("audit verify after the long stop: %v\n%s", err, out)
	}
	if out := must(c.nodes[0].cli("cluster", "status")); strings.Count(out, "Voter") != 3 || strings.Contains(out, "PROBLEM") {
		t.Fatalf("cluster status:\n%s", out)
	}
}

// expireNodeSVID replaces the node SVID in dir with one of id that expired
// an hour ago, signed by the root key in dir (as a long stop leaves it).
func expireNodeSVID(t *testing.T, dir string, id spiffeid.ID, root *x509.Certificate) {
	t.Helper()
	s, err := signer.Open(context.Background(), "soft:"+filepath.Join(dir, "ca", "root.key"), signer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour),
		URIs: []*url.URL{id.URL()}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), s)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.WriteSVIDFiles(filepath.Join(dir, "node"), &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{cert}, PrivateKey: key}, nil); err != nil {
		t.Fatal(err)
	}
}
