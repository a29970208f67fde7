package nodeattest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// tokenReviewConfig makes k8s_psat ask the cluster's API server
// (TokenReview, authentication.k8s.io/v1) instead of verifying the token
// offline: the API server also refuses tokens of deleted pods. Plain
// HTTPS, no client-go (the server binary links no Kubernetes library).
//
//	token_review:
//	  url: https://kube-apiserver.example:6443
//	  ca_file: /etc/tier0/prod-apiserver-ca.pem
//	  token_file: /etc/tier0/prod-reviewer.token   # a token allowed to create tokenreviews
type tokenReviewConfig struct {
	URL       string `yaml:"url"`
	CAFile    string `yaml:"ca_file"`
	TokenFile string `yaml:"token_file"`
}

type tokenReviewer struct {
	url, tokenFile string
	client         *http.Client
}

func newTokenReviewer(c tokenReviewConfig) (*tokenReviewer, error) {
	if !strings.HasPrefix(c.URL, "https://") || c.CAFile == "" || c.TokenFile == "" {
		return nil, errors.New("config: token_review needs an https url, ca_file and token_file")
	}
	raw, err := readFileLimited(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("token_review ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(raw) {
		return nil, fmt.Errorf("token_review ca_file %s: no certificates", c.CAFile)
	}
	if _, err := readFileLimited(c.TokenFile); err != nil {
		return nil, fmt.Errorf("token_review token_file: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &tokenReviewer{url: strings.TrimRight(c.URL, "/"), tokenFile: c.TokenFile, client: &http.Client{Timeout: 10 * time.Second, Transport: tr}}, nil
}

type tokenReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Spec       struct {
		Token     string   `json:"token"`
		Audiences []string `json:"audiences"`
	} `json:"spec"`
	Status struct {
		Authenticated bool     `json:"authenticated"`
		Error         string   `json:"error"`
		Audiences     []string `json:"audiences"`
		User          struct {
			Username string              `json:"username"`
			Extra    map[string][]string `json:"extra"`
		} `json:"user"`
	} `json:"status"`
}

// review asks the API server about token (audience aud) and returns the
// same claims an offline verification yields, with the token's expiry.
func (r *tokenReviewer) review(ctx context.Context, token, aud string) (k8sClaims, time.Time, error) {
	var k k8sClaims
	cred, err := readFileLimited(r.tokenFile) // re-read: it is rotated
	if err != nil {
		return k, time.Time{}, fmt.Errorf("%w: token_review token_file: %v", ErrUnavailable, err)
	}
	var req tokenReview
	req.APIVersion, req.Kind = "authentication.k8s.io/v1", "TokenReview"
	req.Spec.Token, req.Spec.Audiences = token, []string{aud}
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/apis/authentication.k8s.io/v1/tokenreviews", bytes.NewReader(body))
	if err != nil {
		return k, time.Time{}, fmt.Errorf("nodeattest: token review: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
	resp, err := r.client.Do(hr)
	if err != nil {
		return k, time.Time{}, fmt.Errorf("%w: token review: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return k, time.Time{}, fmt.Errorf("%w: token review: HTTP %d", ErrUnavailable, resp.StatusCode)
	}
	var out tokenReview
	if err := json.Unmarshal(raw, &out); err != nil {
		return k, time.Time{}, fmt.Errorf("%w: token review: %v", ErrUnavailable, err)
	}
	st := out.Status
	if !st.Authenticated {
		return k, time.Time{}, denied("token review: not authenticated: %s", st.Error)
	}
	if len(st.Audiences) > 0 && !allowed(st.Audiences, aud) {
		return k, time.Time{}, denied("token review: audience %v", st.Audiences)
	}
	ns, sa, ok := strings.Cut(strings.TrimPrefix(st.User.Username, "system:serviceaccount:"), ":")
	if !ok || !strings.HasPrefix(st.User.Username, "system:serviceaccount:") {
		return k, time.Time{}, denied("token review: %q is not a service account", st.User.Username)
	}
	extra := func(key string) string {
		if v := st.User.Extra["authentication.kubernetes.io/"+key]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	k.K8s.Namespace, k.K8s.ServiceAccount.Name = ns, sa
	k.K8s.Pod.Name, k.K8s.Pod.UID = extra("pod-name"), extra("pod-uid")
	k.K8s.Node.Name, k.K8s.Node.UID = extra("node-name"), extra("node-uid")
	return k, tokenExpiry(token), nil
}

// tokenExpiry reads exp from a token the API server has authenticated
// (for the replay key); an hour from now if it cannot be read.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) == 3 {
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var c struct {
				Exp int64 `json:"exp"`
			}
			if json.Unmarshal(b, &c) == nil && c.Exp > 0 {
				return time.Unix(c.Exp, 0)
			}
		}
	}
	return time.Now().Add(time.Hour)
}
