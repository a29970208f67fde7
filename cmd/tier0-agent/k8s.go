package main

import (
	"errors"

	"github.com/spf13/pflag"

	"github.com/tier0-ca/tier0/cmd/tier0-agent/internal/k8sattest"
)

// nodeNameEnv names the node the agent runs on (SPIRE's default
// node_name_env), set from the downward API in a DaemonSet.
const nodeNameEnv = "MY_NODE_NAME"

// k8sFlags configure Kubernetes workload attestation on `run`.
type k8sFlags struct {
	enabled    bool
	nodeName   string
	kubelet    string
	caFile     string
	skipVerify bool
	tokenFile  string
	procRoot   string
}

func (k *k8sFlags) register(f *pflag.FlagSet, e *env) {
	f.BoolVar(&k.enabled, "k8s", false, "attest workloads as Kubernetes pods too (k8s:ns, k8s:sa, k8s:pod-label:K:V, ... selectors) from their cgroup and the kubelet's pod list")
	f.StringVar(&k.nodeName, "k8s-node-name", e.getenv(nodeNameEnv), "this node's name, for the kubelet URL (env "+nodeNameEnv+", from the downward API spec.nodeName)")
	f.StringVar(&k.kubelet, "k8s-kubelet-url", "", "the kubelet's base URL (default https://NODE:10250)")
	f.StringVar(&k.caFile, "k8s-kubelet-ca", k8sattest.DefaultCAFile, "PEM CA that verifies the kubelet's serving certificate (the kubelet CA, or the cluster CA with serverTLSBootstrap)")
	f.BoolVar(&k.skipVerify, "k8s-kubelet-skip-verify", false, "do not verify the kubelet's certificate (self-signed kubelet certificates; logged as a warning)")
	f.StringVar(&k.tokenFile, "k8s-token", k8sattest.DefaultTokenFile, "bearer token for the kubelet (the agent's service-account token, re-read at each request)")
	f.StringVar(&k.procRoot, "proc-root", "/proc", "where the processes of the workloads are (/proc of the host PID namespace)")
}

// creds returns how Workload API callers are attested.
func (k *k8sFlags) creds(e *env) (peerCreds, error) {
	c := peerCreds{procRoot: k.procRoot}
	if !k.enabled {
		return c, nil
	}
	if k.nodeName == "" && k.kubelet == "" {
		return c, errors.New("--k8s needs --k8s-node-name (or " + nodeNameEnv + ") or --k8s-kubelet-url")
	}
	a, err := k8sattest.New(k8sattest.Config{
		KubeletURL: k.kubelet, NodeName: k.nodeName, CAFile: k.caFile, SkipVerify: k.skipVerify,
		TokenFile: k.tokenFile, ProcRoot: k.procRoot, Logger: e.logger(),
	})
	if err != nil {
		return c, err
	}
	c.attestor = a
	return c, nil
}
