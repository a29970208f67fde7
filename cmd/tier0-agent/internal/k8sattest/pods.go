package k8sattest

import (
	"cmp"
	"slices"
	"strings"
)

// The subset of the Kubernetes core/v1 PodList that attestation reads, in
// the kubelet's JSON. Decoding only these fields keeps the agent free of
// the k8s.io modules (tens of packages for a handful of strings); unknown
// fields are ignored, as Kubernetes clients do.
type podList struct {
	Kind  string `json:"kind"`
	Items []pod  `json:"items"`
}

type pod struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		UID             string            `json:"uid"`
		Labels          map[string]string `json:"labels"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
			UID  string `json:"uid"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		NodeName           string      `json:"nodeName"`
		ServiceAccountName string      `json:"serviceAccountName"`
		Containers         []container `json:"containers"`
		InitContainers     []container `json:"initContainers"`
	} `json:"spec"`
	Status struct {
		ContainerStatuses          []containerStatus `json:"containerStatuses"`
		InitContainerStatuses      []containerStatus `json:"initContainerStatuses"`
		EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type containerStatus struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ContainerID string `json:"containerID"` // RUNTIME://ID
}

// findContainer returns the status of the container with this runtime ID
// (any of the pod's containers: regular, init or ephemeral).
func (p *pod) findContainer(id string) (containerStatus, bool) {
	for _, list := range [][]containerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, cs := range list {
			if _, cid, ok := strings.Cut(cs.ContainerID, "://"); ok && cid == id {
				return cs, true
			}
		}
	}
	return containerStatus{}, false
}

// selectors are the k8s selectors of container cs of p, SPIRE's names:
// ns, sa, node-name, pod-name, pod-uid, pod-label:K:V, pod-owner:KIND:NAME,
// pod-owner-uid:KIND:UID, container-name, container-image (the status and,
// when it differs, the spec image), pod-image and pod-init-image (every
// container's image). Sorted, without duplicates.
func (p *pod) selectors(cs containerStatus) []string {
	m := p.Metadata
	out := []string{
		"k8s:ns:" + m.Namespace, "k8s:sa:" + p.Spec.ServiceAccountName, "k8s:node-name:" + p.Spec.NodeName,
		"k8s:pod-name:" + m.Name, "k8s:pod-uid:" + m.UID, "k8s:container-name:" + cs.Name,
	}
	for k, v := range m.Labels {
		out = append(out, "k8s:pod-label:"+k+":"+v)
	}
	for _, o := range m.OwnerReferences {
		out = append(out, "k8s:pod-owner:"+o.Kind+":"+o.Name, "k8s:pod-owner-uid:"+o.Kind+":"+o.UID)
	}
	images := func(kind string, specs []container, statuses []containerStatus) {
		for _, c := range specs {
			out = append(out, kind+c.Image)
			if c.Name == cs.Name {
				out = append(out, "k8s:container-image:"+c.Image)
			}
		}
		for _, s := range statuses {
			out = append(out, kind+s.Image)
		}
	}
	images("k8s:pod-image:", p.Spec.Containers, p.Status.ContainerStatuses)
	images("k8s:pod-init-image:", p.Spec.InitContainers, p.Status.InitContainerStatuses)
	out = append(out, "k8s:container-image:"+cs.Image)
	// A selector with an empty value (no service account, no node name,
	// an image not yet resolved) is dropped: no entry can name it.
	out = slices.DeleteFunc(out, func(s string) bool { return strings.HasSuffix(s, ":") && strings.Count(s, ":") == 2 })
	slices.SortFunc(out, cmp.Compare)
	return slices.Compact(out)
}
