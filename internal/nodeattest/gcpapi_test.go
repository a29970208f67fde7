package nodeattest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tier0-ca/tier0/internal/nodeattest/attesttest"
)

// TestGCPIITComputeAPI: with compute_api the instance's labels, network
// tags and service accounts come from a local endpoint speaking the
// Compute Engine API's instances.get JSON (bearer token checked); an
// instance recreated under the same name (another id) or gone is denied;
// an API that fails refuses the attestation (ErrLookup).
func TestGCPIITComputeAPI(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		if r.Header.Get("Authorization") != "Bearer gce-token" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`))
			return
		}
		switch r.URL.Path {
		case "/compute/v1/projects/proj-a/zones/europe-west1-b/instances/vm-1":
			_, _ = w.Write([]byte(`{"kind":"compute#instance","id":"9876","name":"vm-1","status":"RUNNING",
  "labels":{"env":"prod","team":"web"},"tags":{"items":["web","https-server"],"fingerprint":"x"},
  "serviceAccounts":[{"email":"fleet@proj-a.iam.gserviceaccount.com","scopes":["https://www.googleapis.com/auth/cloud-platform"]}],
  "metadata":{"kind":"compute#metadata","items":[{"key":"role","value":"frontend"},{"key":"startup-script","value":"SECRET=hunter2"}]}}`))
		case "/compute/v1/projects/proj-a/zones/europe-west1-b/instances/vm-new":
			_, _ = w.Write([]byte(`{"kind":"compute#instance","id":"1111","name":"vm-new"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":{"code":404,"message":"The resource was not found","status":"NOT_FOUND"}}`))
		}
	}))
	defer srv.Close()
	f := newFixture(t)
	dir := t.TempDir()
	tokFile := write(t, dir, "token", []byte("gce-token\n"))
	section := "jwks_file: " + write(t, dir, "google.json", f.google.JWKS(t)) + "\nproject_allow_list: [proj-a]\nallow_reattestation: true\n" +
		"compute_api:\n  endpoint: " + srv.URL + "\n  token_file: " + tokFile + "\n  metadata_keys: [role]\n"
	reg, err := New(Config{TrustDomain: td, Sections: map[string]string{GCPIIT: section}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := reg.Get(GCPIIT)
	attest := func(id, name string) (Result, error) {
		tok := f.google.Sign(t, aud, f.now, f.now.Add(time.Hour), attesttest.GCEClaims("proj-a", "europe-west1-b", id, name))
		return a.Attest(t.Context(), []byte(tok), nil)
	}
	res, err := attest("9876", "vm-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"gcp_iit:label:env:prod", "gcp_iit:label:team:web", "gcp_iit:tag:web", "gcp_iit:tag:https-server",
		"gcp_iit:sa:fleet@proj-a.iam.gserviceaccount.com", "gcp_iit:project-id:proj-a", "gcp_iit:metadata:role:frontend"} {
		if !slices.Contains(res.Selectors, s) {
			t.Errorf("selectors %v lack %s", res.Selectors, s)
		}
	}
	if strings.Contains(strings.Join(res.Selectors, ","), "hunter2") {
		t.Errorf("a metadata value outside metadata_keys became a selector: %v", res.Selectors)
	}
	if _, err := attest("2222", "vm-new"); !errors.Is(err, ErrDenied) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "recreated") {
		t.Fatalf("recreated instance: %v", err)
	}
	if _, err := attest("3333", "vm-gone"); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("gone instance: %v", err)
	}
	write(t, dir, "token", []byte("expired-token\n"))
	if _, err := attest("9876", "vm-1"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) || !strings.Contains(err.Error(), "invalid authentication credentials") {
		t.Fatalf("refused credentials: %v", err)
	}
	srv.Close()
	if _, err := attest("9876", "vm-1"); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrLookup) {
		t.Fatalf("API down: %v", err)
	}
}
