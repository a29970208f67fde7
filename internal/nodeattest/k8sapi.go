package nodeattest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// kube_api (a k8s_psat cluster's) makes k8s_psat read the agent pod's and
// node's labels from the Kubernetes API, as SPIRE's k8s_psat does:
// k8s_psat:agent_pod_label:KEY:VALUE and k8s_psat:agent_node_label:KEY:VALUE.
// The same plain HTTPS REST as token_review (the server links no
// Kubernetes library); the token needs get on pods and nodes.
//
//	kube_api:
//	  url: https://kube-apiserver.example:6443
//	  ca_file: /etc/tier0/prod-apiserver-ca.pem
//	  token_file: /etc/tier0/prod-reader.token
//
// The pod must still be the token's (same UID, on the token's node) and
// the node the token's (same UID when the token names one): a pod or node
// that was deleted and recreated under the same name is refused.

type kubeObject struct {
	Metadata struct {
		Name   string            `json:"name"`
		UID    string            `json:"uid"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
}

// get reads one API object (path below the API server URL).
func (r *tokenReviewer) get(ctx context.Context, path string) (kubeObject, bool, error) {
	var obj kubeObject
	cred, err := readFileLimited(r.tokenFile) // re-read: it is rotated
	if err != nil {
		return obj, false, fmt.Errorf("token_file: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url+path, nil)
	if err != nil {
		return obj, false, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
	resp, err := r.client.Do(req)
	if err != nil {
		return obj, false, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return obj, false, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return obj, false, nil
	case resp.StatusCode != http.StatusOK:
		return obj, false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, apiMessage(raw))
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		return obj, false, err
	}
	return obj, true, nil
}

// kubeSelectors reads the token's pod and node and returns their label
// selectors.
func kubeSelectors(ctx context.Context, api *tokenReviewer, cluster string, kc k8sClaimsBody) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	podPath := "/api/v1/namespaces/" + url.PathEscape(kc.Namespace) + "/pods/" + url.PathEscape(kc.Pod.Name)
	pod, ok, err := api.get(ctx, podPath)
	if err != nil {
		return nil, lookupUnavailable("k8s_psat: cluster %q: Kubernetes API get pod %s/%s: %v", cluster, kc.Namespace, kc.Pod.Name, err)
	}
	if !ok || pod.Metadata.UID != kc.Pod.UID {
		return nil, lookupDenied("k8s_psat: cluster %q: pod %s/%s (uid %s) is gone from the Kubernetes API", cluster, kc.Namespace, kc.Pod.Name, kc.Pod.UID)
	}
	if pod.Spec.NodeName != kc.Node.Name {
		return nil, lookupDenied("k8s_psat: cluster %q: pod %s/%s runs on node %q, the token says %q", cluster, kc.Namespace, kc.Pod.Name, pod.Spec.NodeName, kc.Node.Name)
	}
	node, ok, err := api.get(ctx, "/api/v1/nodes/"+url.PathEscape(kc.Node.Name))
	if err != nil {
		return nil, lookupUnavailable("k8s_psat: cluster %q: Kubernetes API get node %s: %v", cluster, kc.Node.Name, err)
	}
	if !ok || (kc.Node.UID != "" && node.Metadata.UID != kc.Node.UID) {
		return nil, lookupDenied("k8s_psat: cluster %q: node %s (uid %s) is gone from the Kubernetes API", cluster, kc.Node.Name, kc.Node.UID)
	}
	var sels []string
	for k, v := range pod.Metadata.Labels {
		sels = append(sels, "k8s_psat:agent_pod_label:"+k+":"+v)
	}
	for k, v := range node.Metadata.Labels {
		sels = append(sels, "k8s_psat:agent_node_label:"+k+":"+v)
	}
	return sels, nil
}
