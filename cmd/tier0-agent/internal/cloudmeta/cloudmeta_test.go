package cloudmeta

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestGCE: the token request names the audience and format=full and
// carries Metadata-Flavor (the metadata server refuses requests without).
func TestGCE(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" ||
			r.URL.Query().Get("audience") != "spiffe://example.org" || r.URL.Query().Get("format") != "full" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte("a.b.c\n"))
	}))
	defer srv.Close()
	tok, err := GCEIdentityToken(t.Context(), srv.URL, "spiffe://example.org")
	if err != nil || tok != "a.b.c" {
		t.Fatalf("token %q, %v", tok, err)
	}
}

// TestAWS: IMDSv2: a PUT for the session token, then the document and the
// rsa2048 signature with it; without the session token IMDS refuses.
func TestAWS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token" && r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") != "":
			_, _ = w.Write([]byte("sess"))
		case r.Header.Get("X-aws-ec2-metadata-token") != "sess":
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case r.URL.Path == "/latest/dynamic/instance-identity/document":
			_, _ = w.Write([]byte(`{"accountId":"1"}`))
		case r.URL.Path == "/latest/dynamic/instance-identity/rsa2048":
			_, _ = w.Write([]byte("MIIB\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	doc, sig, err := AWSIdentity(t.Context(), srv.URL)
	if err != nil || doc != `{"accountId":"1"}` || sig != "MIIB" {
		t.Fatalf("doc %q sig %q: %v", doc, sig, err)
	}
	srv.Close()
	if _, _, err := AWSIdentity(t.Context(), srv.URL); err == nil {
		t.Fatal("no error from a closed IMDS")
	}
}
