package helm

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestChartAgentK8sPsat: agent.k8sPsat.enabled makes the DaemonSet's
// agents node-attest with k8s_psat on their first start (no per-node join
// token): the cluster name and token path as arguments, the projected
// token with audience spiffe://TRUST-DOMAIN, the configured service
// account; without a cluster name the chart refuses to render.
func TestChartAgentK8sPsat(t *testing.T) {
	prod := readValues(t, production)
	values := with(t, with(t, with(t, prod, "agent.k8sPsat.enabled", true), "agent.k8sPsat.cluster", "prod"), "agent.k8sPsat.serviceAccountName", "tier0-agent")
	manifest, err := render(values)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decode(manifest)
	if err != nil {
		t.Fatal(err)
	}
	check(t, objs, values, 3)
	if len(objs.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets", len(objs.daemonSets))
	}
	spec := objs.daemonSets[0].Spec.Template.Spec
	args := spec.Containers[0].Args
	for _, a := range []string{"--attestor=k8s_psat", "--k8s-psat-cluster=prod", "--k8s-psat-token-file=/var/run/secrets/tokens/tier0-agent", "--bundle=/etc/tier0-agent/tokens/bundle.pem"} {
		if !slices.Contains(args, a) {
			t.Errorf("agent args %q lack %s", args, a)
		}
	}
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--join-token-file") }) {
		t.Errorf("agent args %q: a join token file with k8s_psat", args)
	}
	if spec.ServiceAccountName != "tier0-agent" || spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("service account %q, automount %v", spec.ServiceAccountName, spec.AutomountServiceAccountToken)
	}
	found := false
	for _, v := range spec.Volumes {
		if v.Name != "psat" || v.Projected == nil || len(v.Projected.Sources) != 1 || v.Projected.Sources[0].ServiceAccountToken == nil {
			continue
		}
		sat := v.Projected.Sources[0].ServiceAccountToken
		found = sat.Audience == "spiffe://prod.example" && sat.Path == "tier0-agent" && sat.ExpirationSeconds != nil && *sat.ExpirationSeconds == 3600
	}
	if !found || !slices.ContainsFunc(spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "psat" && m.MountPath == "/var/run/secrets/tokens" }) {
		t.Errorf("no projected token volume for audience spiffe://prod.example mounted at /var/run/secrets/tokens: %+v", spec.Volumes)
	}
	if _, err := render(with(t, prod, "agent.k8sPsat.enabled", true)); err == nil || !strings.Contains(err.Error(), "agent.k8sPsat.cluster is required") {
		t.Errorf("no cluster name: %v", err)
	}
}
