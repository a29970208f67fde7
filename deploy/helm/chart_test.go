package helm

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite deploy/k8s/tier0.yaml from the chart")

const (
	production = "tier0/examples/production.yaml"
	rendered   = "../k8s/tier0.yaml"
)

// TestChart renders the chart with the production example and variants of
// it, decodes every manifest strictly and checks what a cluster needs.
func TestChart(t *testing.T) {
	prod := readValues(t, production)
	for _, tc := range []struct {
		name     string
		values   map[string]any
		replicas int
	}{
		{"production example (3 nodes, pkcs11)", prod, 3},
		{"5 nodes", with(t, prod, "replicas", 5), 5},
		{"KMS keys, static image, no agent, joined, preferred anti-affinity", with(t, with(t, with(t, with(t, with(t, with(t, prod,
			"signer", "awskms:///arn:aws:kms:eu-west-1:111122223333:key/root"),
			"auditKey", "gcpkms:projects/p/locations/l/keyRings/r/cryptoKeys/audit/cryptoKeyVersions/1"),
			"hsm.pinSecret.name", ""), "agent.enabled", false), "join.enabled", false), "antiAffinity", "preferred"), 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			manifest, err := render(tc.values)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decode(manifest)
			if err != nil {
				t.Fatal(err)
			}
			check(t, objs, tc.values, tc.replicas)
		})
	}
}

// check asserts the properties docs/OPERATIONS.md promises of the chart.
func check(t *testing.T, o *objects, values map[string]any, replicas int) {
	t.Helper()
	if len(o.statefulSet) != 1 || len(o.configMaps) != 1 || len(o.pdbs) != 1 || len(o.services) != 2 {
		t.Fatalf("want 1 StatefulSet, ConfigMap, PDB and 2 Services, got %d %d %d %d",
			len(o.statefulSet), len(o.configMaps), len(o.pdbs), len(o.services))
	}
	ss := o.statefulSet[0]
	pod := ss.Spec.Template
	podLabels := labels.Set(pod.Labels)
	if ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel (a full cold start must not wait for pod 0 to be Ready)", ss.Spec.PodManagementPolicy)
	}
	if ss.Spec.Replicas == nil || int(*ss.Spec.Replicas) != replicas {
		t.Errorf("replicas %v, want %d", ss.Spec.Replicas, replicas)
	}
	selects(t, "StatefulSet selector", ss.Spec.Selector.MatchLabels, podLabels)
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("containers: %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	probe(t, c, c.LivenessProbe, "liveness", "/livez")
	probe(t, c, c.ReadinessProbe, "readiness", "/readyz")
	if !slices.Equal(c.Args, []string{"server", "--config", "/etc/tier0/config/$(POD_NAME).yaml"}) || c.Command != nil {
		t.Errorf("command %q args %q", c.Command, c.Args)
	}
	envs := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		envs[e.Name] = e
		if errs := validation.IsEnvVarName(e.Name); len(errs) > 0 {
			t.Errorf("env %s: %v", e.Name, errs)
		}
		if strings.HasPrefix(e.Name, "TIER0_") {
			t.Errorf("env %s: per-pod settings belong in the pod's config file", e.Name)
		}
	}
	if pw := envs["PGPASSWORD"]; pw.Value != "" || pw.ValueFrom == nil || pw.ValueFrom.SecretKeyRef == nil || pw.ValueFrom.SecretKeyRef.Name != "tier0-db" {
		t.Errorf("PGPASSWORD %+v, want it from the Secret tier0-db", pw)
	}
	if pin := envs["HSM_PIN"]; values["hsm"] != nil && hasPinSecret(values) && (pin.ValueFrom == nil || pin.ValueFrom.SecretKeyRef == nil || pin.ValueFrom.SecretKeyRef.Name != "tier0-hsm-pin") {
		t.Errorf("HSM_PIN %+v, want it from the Secret tier0-hsm-pin", pin)
	}
	if ref := envs["POD_NAME"].ValueFrom; ref == nil || ref.FieldRef == nil || ref.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME %+v, want the pod name", envs["POD_NAME"])
	}
	checkSecurity(t, pod.Spec, c)
	checkAffinity(t, pod.Spec, podLabels, values["antiAffinity"] == "preferred")
	checkVolumes(t, pod.Spec)
	if pdb := o.pdbs[0]; pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable %v, want 1", pdb.Spec.MaxUnavailable)
	} else {
		selects(t, "PDB selector", pdb.Spec.Selector.MatchLabels, podLabels)
	}
	for _, s := range o.services {
		selects(t, "Service "+s.Name, s.Spec.Selector, podLabels)
		if s.Spec.ClusterIP == corev1.ClusterIPNone && !s.Spec.PublishNotReadyAddresses {
			t.Errorf("headless Service %s must publish not-ready pods (raft forms among pods not yet ready)", s.Name)
		}
	}
	if ss.Spec.ServiceName != release {
		t.Errorf("serviceName %q", ss.Spec.ServiceName)
	}
	checkConfigs(t, o.configMaps[0], values, replicas)
	agent, _ := values["agent"].(map[string]any)
	if enabled := enabledOrDefault(agent); enabled != (len(o.daemonSets) == 1) {
		t.Errorf("agent.enabled=%v but %d DaemonSets", enabled, len(o.daemonSets))
	}
	for _, ds := range o.daemonSets {
		checkAgent(t, ds)
	}
	for _, obj := range []interface{ GetName() string }{ss, o.configMaps[0], o.pdbs[0]} {
		if errs := validation.IsDNS1123Subdomain(obj.GetName()); len(errs) > 0 {
			t.Errorf("name %q: %v", obj.GetName(), errs)
		}
	}
}

func selects(t *testing.T, what string, sel map[string]string, podLabels labels.Set) {
	t.Helper()
	if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(podLabels) {
		t.Errorf("%s %v does not select the pods (%v)", what, sel, podLabels)
	}
}

func probe(t *testing.T, c corev1.Container, p *corev1.Probe, what, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "http" {
		t.Errorf("%s probe %+v, want GET %s on the http port", what, p, path)
		return
	}
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == "http" }) {
		t.Errorf("%s probe names port http, which the container does not have", what)
	}
}

func checkSecurity(t *testing.T, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v, want a non-root user", psc)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil ||
		*sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v, want read-only root, no escalation, no capabilities", sc)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a Kubernetes API token it does not use")
	}
}

func checkAffinity(t *testing.T, spec corev1.PodSpec, podLabels labels.Set, preferred bool) {
	t.Helper()
	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		t.Fatal("no pod anti-affinity")
	}
	aa := spec.Affinity.PodAntiAffinity
	terms := aa.RequiredDuringSchedulingIgnoredDuringExecution
	if preferred {
		for _, w := range aa.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	if len(terms) != 1 || terms[0].TopologyKey != "kubernetes.io/hostname" {
		t.Fatalf("anti-affinity terms %+v, want one on kubernetes.io/hostname", terms)
	}
	selects(t, "anti-affinity", terms[0].LabelSelector.MatchLabels, podLabels)
}

// checkVolumes: every mount names a volume; Secrets are mounted read-only
// and owner-only.
func checkVolumes(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		if s := v.Secret; s != nil && (s.DefaultMode == nil || *s.DefaultMode != 0o400) {
			t.Errorf("secret volume %s mode %v, want 0400", v.Name, s.DefaultMode)
		}
	}
	for _, c := range spec.Containers {
		for _, m := range c.VolumeMounts {
			v, ok := vols[m.Name]
			if !ok && m.Name != "data" { // data: the volumeClaimTemplate
				t.Errorf("mount %s names no volume", m.Name)
			}
			if v.Secret != nil && !m.ReadOnly {
				t.Errorf("secret %s mounted writable", m.Name)
			}
		}
	}
}

// checkConfigs: one config file per pod, with its node ID and raft
// address, HSM/KMS key URIs for the CA and audit keys, a store DSN without
// a password, and join settings on the joining pods only.
func checkConfigs(t *testing.T, cm *corev1.ConfigMap, values map[string]any, replicas int) {
	t.Helper()
	if len(cm.Data) != replicas {
		t.Errorf("%d config files, want %d", len(cm.Data), replicas)
	}
	join, _ := values["join"].(map[string]any)
	joinOn := enabledOrDefault(join)
	for i := range replicas {
		pod := fmt.Sprintf("%s-%d", release, i)
		raw, ok := cm.Data[pod+".yaml"]
		if !ok {
			t.Errorf("no config file for %s", pod)
			continue
		}
		var cfg map[string]any
		if err := yaml.UnmarshalStrict([]byte(raw), &cfg); err != nil {
			t.Errorf("%s.yaml: %v", pod, err)
			continue
		}
		want := map[string]any{
			"node-id": pod, "data-dir": "/var/lib/tier0", "trust-domain": values["trustDomain"],
			"raft-advertise": fmt.Sprintf("%s.%s.%s.svc:7443", pod, release, namespace),
		}
		for k, v := range want {
			if cfg[k] != v {
				t.Errorf("%s.yaml %s = %v, want %v", pod, k, cfg[k], v)
			}
		}
		for _, k := range []string{"signer", "audit-key"} {
			uri, _ := cfg[k].(string)
			if !strings.HasPrefix(uri, "pkcs11:") && !strings.HasPrefix(uri, "awskms:") && !strings.HasPrefix(uri, "gcpkms:") {
				t.Errorf("%s.yaml %s = %q, want an HSM/KMS URI (never the DEV-ONLY soft key)", pod, k, uri)
			}
		}
		dsn, _ := cfg["store"].(string)
		u, err := url.Parse(dsn)
		if err != nil || u.Scheme != "postgres" {
			t.Errorf("%s.yaml store %q: want a postgres URL", pod, dsn)
		} else if _, has := u.User.Password(); has || u.Query().Has("password") {
			t.Errorf("%s.yaml store DSN holds a password", pod)
		}
		_, hasJoin := cfg["join"]
		if wantJoin := joinOn && i > 0; hasJoin != wantJoin {
			t.Errorf("%s.yaml join set %v, want %v", pod, hasJoin, wantJoin)
		}
		if hasJoin {
			if tok := cfg["join-token-file"]; tok != "/etc/tier0/join/"+pod {
				t.Errorf("%s.yaml join-token-file %v, want /etc/tier0/join/%s (waited for: cold start)", pod, tok, pod)
			}
			peers, _ := cfg["join"].([]any)
			if len(peers) != replicas-1 || slices.Contains(peers, any(fmt.Sprintf("%s.%s.%s.svc:8443", pod, release, namespace))) {
				t.Errorf("%s.yaml join %v, want the %d other pods", pod, peers, replicas-1)
			}
		}
	}
}

// hasPinSecret: the values name an HSM PIN Secret.
func hasPinSecret(values map[string]any) bool {
	hsm, _ := values["hsm"].(map[string]any)
	ps, _ := hsm["pinSecret"].(map[string]any)
	name, _ := ps["name"].(string)
	return name != ""
}

// enabledOrDefault is m["enabled"], true (values.yaml) when unset.
func enabledOrDefault(m map[string]any) bool {
	on, set := m["enabled"].(bool)
	return on || !set
}

func checkAgent(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	selects(t, "DaemonSet selector", ds.Spec.Selector.MatchLabels, labels.Set(ds.Spec.Template.Labels))
	var socket *corev1.Volume
	for i, v := range spec.Volumes {
		if v.Name == "socket" {
			socket = &spec.Volumes[i]
		}
	}
	if socket == nil || socket.HostPath == nil || socket.HostPath.Path != "/run/tier0-agent" {
		t.Fatalf("agent socket volume %+v, want hostPath /run/tier0-agent", socket)
	}
	c := spec.Containers[0]
	if len(c.Args) == 0 || c.Args[0] != "run" || !slices.Contains(c.Args, "--socket=/run/tier0-agent/agent.sock") ||
		!slices.Contains(c.Args, "--server=tier0-api.identity.svc:8443") {
		t.Errorf("agent args %q", c.Args)
	}
	if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("agent security context %+v", sc)
	}
}

// TestChartRefuses: values that would run production on DEV-ONLY keys, put
// a password in the DSN, leave out a key or break quorum math are refused
// at render time with a message saying what to do.
func TestChartRefuses(t *testing.T) {
	prod := readValues(t, production)
	for _, tc := range []struct {
		key  string
		val  any
		want string
	}{
		{"signer", "", "signer is required: the URI of an HSM or KMS key"},
		{"auditKey", "", "auditKey is required"},
		{"signer", "soft:/var/lib/tier0/ca/root.key", "signer must be an HSM or KMS key URI (pkcs11:, awskms:, gcpkms:); DEV-ONLY soft keys are refused"},
		{"auditKey", "soft:ca/audit.key", "auditKey must be an HSM or KMS key URI"},
		{"store.dsn", "postgres://tier0:hunter2@db:5432/tier0", "store.dsn must not hold a password"},
		{"store.dsn", "postgres://tier0@db:5432/tier0?sslmode=require&password=hunter2", "store.dsn must not hold a password"},
		{"store.dsn", "sqlite:/var/lib/tier0/records.db", "store.dsn must be a postgres:// URL"},
		{"store.dsn", "", "store.dsn is required"},
		{"trustDomain", "", "trustDomain is required"},
		{"replicas", 4, "replicas"},
		{"replicas", 1, "replicas"},
		{"antiAffinity", "none", "antiAffinity"},
		{"config", map[string]any{"node-id": "x"}, "config.node-id is set by the chart"},
		{"config", map[string]any{"store": "x"}, "config.store is set by the chart"},
	} {
		_, err := render(with(t, prod, tc.key, tc.val))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%v: err %v, want %q", tc.key, tc.val, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.key, err)
		}
	}
}

// TestRenderedManifest: deploy/k8s/tier0.yaml is the chart rendered with
// the production example (for kubectl users); `go test -update` rewrites it.
func TestRenderedManifest(t *testing.T) {
	manifest, err := render(readValues(t, production))
	if err != nil {
		t.Fatal(err)
	}
	want := "# GENERATED from deploy/helm/tier0 with deploy/helm/tier0/examples/production.yaml by\n" +
		"#   cd deploy && go test ./helm -run TestRenderedManifest -update\n" +
		"# (release tier0, namespace identity). Prefer the chart: docs/OPERATIONS.md \"Kubernetes\".\n" +
		"# The Secrets it names (tier0-db, tier0-hsm-pin, tier0-join, tier0-agent-tokens) are yours to create.\n" + manifest
	if *update {
		if err := os.WriteFile(rendered, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not the chart's rendering: run `cd deploy && go test ./helm -run TestRenderedManifest -update`", rendered)
	}
	if _, err := decode(string(got)); err != nil {
		t.Error(err)
	}
}
