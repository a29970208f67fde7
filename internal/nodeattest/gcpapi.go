package nodeattest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// gcpAPIConfig makes gcp_iit read selectors from the Compute Engine API
// (instances.get), as SPIRE's gcp_iit does: the instance's labels
// (gcp_iit:label:KEY:VALUE), network tags (gcp_iit:tag:TAG), service
// accounts (gcp_iit:sa:EMAIL) and the metadata values of the keys listed
// in metadata_keys (gcp_iit:metadata:KEY:VALUE; only those: metadata can
// hold secrets, which must not reach selectors and the decision log). The
// credentials need compute.instances.get in the allowed projects.
//
//	compute_api:
//	  endpoint: https://compute.googleapis.com   # optional (the default)
//	  token_file: /etc/tier0/gce-token           # optional: a bearer token, re-read per call;
//	                                             # default: Application Default Credentials
//	  metadata_keys: [role]                      # optional: metadata keys that become selectors
type gcpAPIConfig struct {
	Endpoint     string   `yaml:"endpoint"`
	TokenFile    string   `yaml:"token_file"`
	MetadataKeys []string `yaml:"metadata_keys"`
}

// GoogleComputeEndpoint is the Compute Engine API's default endpoint.
const GoogleComputeEndpoint = "https://compute.googleapis.com"

type gcpAPI struct {
	endpoint, tokenFile string
	metadataKeys        []string
	client              *http.Client
	ts                  oauth2.TokenSource
}

func newGCPAPI(c gcpAPIConfig) (*gcpAPI, error) {
	a := &gcpAPI{endpoint: strings.TrimRight(c.Endpoint, "/"), tokenFile: c.TokenFile, metadataKeys: c.MetadataKeys, client: &http.Client{Timeout: lookupTimeout}}
	if a.endpoint == "" {
		a.endpoint = GoogleComputeEndpoint
	}
	if u, err := url.Parse(a.endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("config: compute_api endpoint %q: want an http(s) URL", c.Endpoint)
	}
	if c.TokenFile != "" {
		if _, err := readFileLimited(c.TokenFile); err != nil {
			return nil, fmt.Errorf("compute_api token_file: %w", err)
		}
		return a, nil
	}
	ts, err := google.DefaultTokenSource(context.Background(), "https://www.googleapis.com/auth/compute.readonly")
	if err != nil {
		return nil, fmt.Errorf("compute_api: application default credentials: %w", err)
	}
	a.ts = ts
	return a, nil
}

// gceInstance holds the instances.get fields that are used.
type gceInstance struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Tags   struct {
		Items []string `json:"items"`
	} `json:"tags"`
	ServiceAccounts []struct {
		Email string `json:"email"`
	} `json:"serviceAccounts"`
	Metadata struct {
		Items []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"items"`
	} `json:"metadata"`
}

func (a *gcpAPI) token() (string, error) {
	if a.tokenFile != "" {
		b, err := readFileLimited(a.tokenFile)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	t, err := a.ts.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// selectors gets the instance named in the token and checks it is the
// same instance (its ID), then returns its label, tag and service account
// selectors.
func (a *gcpAPI) selectors(ctx context.Context, project, zone, name, id string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	tok, err := a.token()
	if err != nil {
		return nil, lookupUnavailable("gcp_iit: Compute API credentials: %v", err)
	}
	u := a.endpoint + "/compute/v1/projects/" + url.PathEscape(project) + "/zones/" + url.PathEscape(zone) + "/instances/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, lookupUnavailable("gcp_iit: Compute API: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, lookupUnavailable("gcp_iit: Compute API instances.get %s/%s/%s: %v", project, zone, name, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, lookupUnavailable("gcp_iit: Compute API instances.get %s/%s/%s: %v", project, zone, name, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, lookupDenied("gcp_iit: Compute API: instance %s/%s/%s not found", project, zone, name)
	case resp.StatusCode != http.StatusOK:
		return nil, lookupUnavailable("gcp_iit: Compute API instances.get %s/%s/%s: HTTP %d: %s", project, zone, name, resp.StatusCode, apiMessage(raw))
	}
	var in gceInstance
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, lookupUnavailable("gcp_iit: Compute API instances.get %s/%s/%s: %v", project, zone, name, err)
	}
	if in.ID != id {
		return nil, lookupDenied("gcp_iit: Compute API: instance %s/%s/%s has id %s, the token %s (recreated?)", project, zone, name, in.ID, id)
	}
	var sels []string
	for k, v := range in.Labels {
		sels = append(sels, "gcp_iit:label:"+k+":"+v)
	}
	for _, t := range in.Tags.Items {
		sels = append(sels, "gcp_iit:tag:"+t)
	}
	for _, sa := range in.ServiceAccounts {
		sels = append(sels, "gcp_iit:sa:"+sa.Email)
	}
	for _, m := range in.Metadata.Items {
		if slices.Contains(a.metadataKeys, m.Key) {
			sels = append(sels, "gcp_iit:metadata:"+m.Key+":"+m.Value)
		}
	}
	return sels, nil
}

// apiMessage is the error.message of a Google or Kubernetes API error
// body (else the start of the body), for the decision log.
func apiMessage(raw []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil {
		if e.Error.Message != "" {
			return e.Error.Message
		}
		if e.Message != "" {
			return e.Message
		}
	}
	s := string(raw)
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.TrimSpace(s)
}
