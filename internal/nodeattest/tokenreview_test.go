package nodeattest

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestK8sPSATTokenReview: with token_review the API server decides
// (authenticated, audiences, the service account and pod/node extras);
// the request carries the reviewer's bearer token and the trust domain
// audience; a refused review is denied; an unreachable API server is
// Unavailable.
func TestK8sPSATTokenReview(t *testing.T) {
	is := attesttest.NewIssuer(t, "https://k8s.prod", "k1")
	now := time.Now()
	good := is.Sign(t, aud, now, now.Add(10*time.Minute), map[string]any{"sub": "x"})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req tokenReview
		if r.URL.Path != "/apis/authentication.k8s.io/v1/tokenreviews" || r.Header.Get("Authorization") != "Bearer reviewer-token" ||
			json.NewDecoder(r.Body).Decode(&req) != nil || !slices.Equal(req.Spec.Audiences, []string{aud}) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		resp := req
		switch req.Spec.Token {
		case good:
			resp.Status.Authenticated, resp.Status.Audiences = true, []string{aud}
			resp.Status.User.Username = "system:serviceaccount:tier0:tier0-agent"
			resp.Status.User.Extra = map[string][]string{
				"authentication.kubernetes.io/pod-name": {"agent-x"}, "authentication.kubernetes.io/pod-uid": {"pod-1"},
				"authentication.kubernetes.io/node-name": {"node-a"}, "authentication.kubernetes.io/node-uid": {"nuid-a"},
			}
		case "other-sa":
			resp.Status.Authenticated = true
			resp.Status.User.Username = "system:serviceaccount:default:default"
			resp.Status.User.Extra = map[string][]string{"authentication.kubernetes.io/pod-uid": {"p"}, "authentication.kubernetes.io/node-name": {"n"}}
		default:
			resp.Status.Error = "token has been invalidated"
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(resp)
	}))
	defer srv.Close()
	dir := t.TempDir()
	caFile := write(t, dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	tokFile := write(t, dir, "reviewer", []byte("reviewer-token\n"))
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{K8sPSAT: "clusters:\n  prod:\n    token_review:\n      url: " + srv.URL +
		"\n      ca_file: " + caFile + "\n      token_file: " + tokFile + "\n    service_account_allow_list: [tier0:tier0-agent]\n"}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(K8sPSAT)
	attest := func(tok string) (Result, error) {
		return a.Attest(t.Context(), mustJSON(t, K8sPSATEvidence{Cluster: "prod", Token: tok}), nil)
	}
	res, err := attest(good)
	if err != nil {
		t.Fatal(err)
	}
	if res.AgentName != "k8s_psat.prod.nuid-a" || !slices.Contains(res.Selectors, "k8s_psat:agent_pod_uid:pod-1") ||
		res.Replay[0].Until.Before(now.Add(10*time.Minute)) || res.Replay[1].Key != "k8s_psat:pod_uid:prod:pod-1" {
		t.Fatalf("result = %+v", res)
	}
	if _, err := attest("revoked"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "invalidated") {
		t.Fatalf("refused review: %v", err)
	}
	if _, err := attest("other-sa"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("other service account: %v", err)
	}
	srv.Close()
	if _, err := attest(good); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("API server down: %v", err)
	}
}
