package nodeattest

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestK8sPSATKubeAPI: with kube_api the agent pod's and node's labels come
// from a local endpoint speaking the Kubernetes REST JSON (the reader's
// bearer token checked); a pod recreated under the same name, a pod on
// another node or a gone node is denied; an API server that refuses or
// does not answer refuses the attestation (ErrLookup).
func TestK8sPSATKubeAPI(t *testing.T) {
	var podUID atomic.Value
	podUID.Store("pod-uid-1")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer reader-token" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"agent-x\" is forbidden: User \"system:anonymous\" cannot get resource \"pods\"","reason":"Forbidden","code":403}`))
			return
		}
		switch r.URL.Path {
		case "/api/v1/namespaces/tier0/pods/agent-x":
			_, _ = w.Write([]byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"agent-x","namespace":"tier0","uid":"` + podUID.Load().(string) + `",
  "labels":{"app":"tier0-agent","pod-template-hash":"abc"}},"spec":{"nodeName":"node-a","serviceAccountName":"tier0-agent"},"status":{"phase":"Running"}}`))
		case "/api/v1/nodes/node-a":
			_, _ = w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-a","uid":"node-uid-a",
  "labels":{"kubernetes.io/hostname":"node-a","topology.kubernetes.io/zone":"eu-1a"}},"spec":{}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"not found","reason":"NotFound","code":404}`))
		}
	}))
	defer srv.Close()
	f := newFixture(t)
	dir := t.TempDir()
	caFile := write(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	tokFile := write(t, dir, "reader", []byte("reader-token\n"))
	section := "clusters:\n  prod:\n    jwks_file: " + write(t, dir, "k8s.json", f.k8s.JWKS(t)) +
		"\n    service_account_allow_list: [tier0:tier0-agent]\n    kube_api:\n      url: " + srv.URL +
		"\n      ca_file: " + caFile + "\n      token_file: " + tokFile + "\nallow_reattestation: true\n"
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{K8sPSAT: section}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(K8sPSAT)
	attest := func(pod, node, nodeUID string) (Result, error) {
		tok := f.k8s.Sign(t, aud, f.now, f.now.Add(10*time.Minute), attesttest.PSATClaims("tier0", "tier0-agent", pod, "pod-uid-1", node, nodeUID))
		return a.Attest(t.Context(), mustJSON(t, K8sPSATEvidence{Cluster: "prod", Token: tok}), nil)
	}
	res, err := attest("agent-x", "node-a", "node-uid-a")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"k8s_psat:agent_pod_label:app:tier0-agent", "k8s_psat:agent_node_label:topology.kubernetes.io/zone:eu-1a",
		"k8s_psat:agent_node_label:kubernetes.io/hostname:node-a", "k8s_psat:cluster:prod"} {
		if !slices.Contains(res.Selectors, s) {
			t.Errorf("selectors %v lack %s", res.Selectors, s)
		}
	}
	if _, err := attest("agent-x", "node-b", ""); !errors.Is(err, ErrDenied) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "runs on node") {
		t.Fatalf("pod on another node: %v", err)
	}
	if _, err := attest("agent-x", "node-a", "node-uid-old"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "node node-a") {
		t.Fatalf("recreated node: %v", err)
	}
	podUID.Store("pod-uid-2")
	if _, err := attest("agent-x", "node-a", "node-uid-a"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "is gone") {
		t.Fatalf("recreated pod: %v", err)
	}
	podUID.Store("pod-uid-1")
	write(t, dir, "reader", []byte("wrong\n"))
	if _, err := attest("agent-x", "node-a", "node-uid-a"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("refused reader: %v", err)
	}
	srv.Close()
	if _, err := attest("agent-x", "node-a", "node-uid-a"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) {
		t.Fatalf("API server down: %v", err)
	}
}
