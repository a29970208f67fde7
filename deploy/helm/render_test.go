// Package helm holds the tests of the tier0 Helm chart (deploy/helm/tier0):
// it is rendered offline with the Helm SDK and every manifest is decoded
// strictly into the Kubernetes API types (an unknown or repeated field is
// an error), then checked for what a tier0 cluster needs.
package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

const (
	chartDir  = "tier0"
	release   = "tier0"
	namespace = "identity"
)

// render renders the chart as `helm template tier0 deploy/helm/tier0 -n
// identity -f values` would, values.schema.json included; NOTES.txt is
// left out. The manifests are joined in file name order.
func render(values map[string]any) (string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return "", err
	}
	vals, err := util.ToRenderValuesWithSchemaValidation(ch, values,
		common.ReleaseOptions{Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, nil, false)
	if err != nil {
		return "", err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(files)) {
		body := strings.TrimSpace(files[name])
		if strings.HasSuffix(name, "NOTES.txt") || body == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", name, body)
	}
	return b.String(), nil
}

// readValues reads a values file of the chart (examples/...).
func readValues(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// with returns a copy of values with the dotted key set (nil deletes it).
func with(t *testing.T, values map[string]any, key string, v any) map[string]any {
	t.Helper()
	raw, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	m := out
	parts := strings.Split(key, ".")
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	if v == nil {
		delete(m, parts[len(parts)-1])
	} else {
		m[parts[len(parts)-1]] = v
	}
	return out
}

// objects are the decoded manifests of one render, by kind.
type objects struct {
	configMaps  []*corev1.ConfigMap
	services    []*corev1.Service
	accounts    []*corev1.ServiceAccount
	statefulSet []*appsv1.StatefulSet
	daemonSets  []*appsv1.DaemonSet
	pdbs        []*policyv1.PodDisruptionBudget
}

var codecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// decode decodes every document of a rendered manifest strictly into its
// Kubernetes type. A kind the chart should not make (a Secret above all)
// is an error.
func decode(manifest string) (*objects, error) {
	out := &objects{}
	r := utilyaml.NewYAMLReader(bufioReader(manifest))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, gvk, err := codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			out.configMaps = append(out.configMaps, o)
		case *corev1.Service:
			out.services = append(out.services, o)
		case *corev1.ServiceAccount:
			out.accounts = append(out.accounts, o)
		case *appsv1.StatefulSet:
			out.statefulSet = append(out.statefulSet, o)
		case *appsv1.DaemonSet:
			out.daemonSets = append(out.daemonSets, o)
		case *policyv1.PodDisruptionBudget:
			out.pdbs = append(out.pdbs, o)
		default:
			return nil, fmt.Errorf("the chart makes a %s, which it should not (a Secret would overwrite the operator's on upgrade)", gvk)
		}
	}
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
