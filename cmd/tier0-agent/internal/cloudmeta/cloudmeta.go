// Package cloudmeta fetches node attestation evidence from the cloud
// instance metadata services: the GCE instance identity token and the EC2
// instance identity document with its PKCS#7 signature (IMDSv2).
package cloudmeta

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Default metadata service addresses.
const (
	GCEMetadataURL = "http://metadata.google.internal"
	AWSIMDSURL     = "http://169.254.169.254"
)

var httpClient = &http.Client{Timeout: 10 * time.Second}

// GCEIdentityToken returns the instance identity token for audience
// (format=full: it carries the project, zone and instance claims).
func GCEIdentityToken(ctx context.Context, base, audience string) (string, error) {
	u := strings.TrimRight(base, "/") + "/computeMetadata/v1/instance/service-accounts/default/identity?audience=" +
		url.QueryEscape(audience) + "&format=full"
	b, err := get(ctx, http.MethodGet, u, map[string]string{"Metadata-Flavor": "Google"})
	if err != nil {
		return "", fmt.Errorf("cloudmeta: gce identity token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// AWSIdentity returns the instance identity document and its base64
// PKCS#7 signature (rsa2048), through an IMDSv2 session token.
func AWSIdentity(ctx context.Context, base string) (doc, pkcs7 string, err error) {
	base = strings.TrimRight(base, "/")
	tok, err := get(ctx, http.MethodPut, base+"/latest/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "60"})
	if err != nil {
		return "", "", fmt.Errorf("cloudmeta: imdsv2 token: %w", err)
	}
	h := map[string]string{"X-aws-ec2-metadata-token": strings.TrimSpace(string(tok))}
	d, err := get(ctx, http.MethodGet, base+"/latest/dynamic/instance-identity/document", h)
	if err != nil {
		return "", "", fmt.Errorf("cloudmeta: identity document: %w", err)
	}
	p, err := get(ctx, http.MethodGet, base+"/latest/dynamic/instance-identity/rsa2048", h)
	if err != nil {
		return "", "", fmt.Errorf("cloudmeta: identity signature: %w", err)
	}
	return string(d), strings.TrimSpace(string(p)), nil
}

func get(ctx context.Context, method, u string, headers map[string]string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %d", method, u, resp.StatusCode)
	}
	return b, nil
}
