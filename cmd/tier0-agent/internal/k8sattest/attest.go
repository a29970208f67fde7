// Package k8sattest attests a Workload API caller as a Kubernetes
// workload: from its PID to its pod and container (the kubelet's cgroup
// layout in /proc/PID/cgroup), and from the kubelet's pod list (GET /pods
// on the kubelet's HTTPS port, verified with the kubelet or cluster CA and
// authenticated with the agent's service-account token) to the selectors
// k8s:ns, k8s:sa, k8s:pod-label:K:V, k8s:container-name, ... (SPIRE's
// names; see pod.selectors).
package k8sattest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tier0-ca/tier0/internal/backoff"
)

// Defaults: the in-pod service-account files, the kubelet's secure port.
const (
	DefaultCAFile      = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultTokenFile   = "/var/run/secrets/kubernetes.io/serviceaccount/token" //nolint:gosec // G101: a path
	DefaultKubeletPort = 10250
	maxPodListBytes    = 64 << 20 // a node's pod list; 110 pods are a few MiB
)

// ErrNotFound: the caller's pod or container is not in the kubelet's pod
// list, even after waiting RetryFor (a container that started that long
// ago is listed).
var ErrNotFound = errors.New("k8sattest: pod not found")

// Config configures an Attestor. Only NodeName or KubeletURL is required.
type Config struct {
	// KubeletURL is the kubelet's base URL; default https://NODE:10250.
	KubeletURL string
	NodeName   string // the node the agent runs on (downward API spec.nodeName)
	// CAFile verifies the kubelet's serving certificate: the kubelet CA,
	// or the cluster CA when kubelets have CA-signed serving certificates
	// (serverTLSBootstrap). Default DefaultCAFile.
	CAFile string
	// SkipVerify accepts any kubelet certificate (SPIRE's
	// skip_kubelet_verification, for kubelets with self-signed serving
	// certificates). An on-path attacker could then forge pod lists.
	SkipVerify bool
	// TokenFile is the bearer token (the agent's service-account token),
	// read at every request since projected tokens rotate. Default
	// DefaultTokenFile; "-" sends none.
	TokenFile string
	ProcRoot  string // default /proc

	CacheTTL    time.Duration // how long a pod list serves lookups; default 1s
	RetryFor    time.Duration // how long to wait for a pod to be listed; default 10s
	RetryEvery  time.Duration // the wait between fetches while waiting; default 250ms
	HTTPTimeout time.Duration // per kubelet request; default 5s
	Logger      *slog.Logger  // default slog.Default()
	Clock       func() time.Time
}

// Attestor maps PIDs to k8s selectors. It is safe for concurrent use.
type Attestor struct {
	cfg  Config
	log  *slog.Logger
	url  string
	http *http.Client

	mu      sync.Mutex // serialises fetches; guards the cache
	pods    []pod
	fetched time.Time
}

// New validates cfg, fills defaults and returns an Attestor.
func New(cfg Config) (*Attestor, error) {
	if cfg.KubeletURL == "" {
		if cfg.NodeName == "" {
			return nil, errors.New("k8sattest: config: the node name (or the kubelet URL) is required")
		}
		cfg.KubeletURL = "https://" + net.JoinHostPort(cfg.NodeName, strconv.Itoa(DefaultKubeletPort))
	}
	u, err := url.Parse(cfg.KubeletURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("k8sattest: config: kubelet URL %q: want https://HOST:PORT", cfg.KubeletURL)
	}
	cfg.CAFile = cmpOr(cfg.CAFile, DefaultCAFile)
	cfg.TokenFile = cmpOr(cfg.TokenFile, DefaultTokenFile)
	cfg.ProcRoot = cmpOr(cfg.ProcRoot, "/proc")
	cfg.CacheTTL = cmpOr(cfg.CacheTTL, time.Second)
	cfg.RetryFor = cmpOr(cfg.RetryFor, 10*time.Second)
	cfg.RetryEvery = cmpOr(cfg.RetryEvery, 250*time.Millisecond)
	cfg.HTTPTimeout = cmpOr(cfg.HTTPTimeout, 5*time.Second)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.SkipVerify {
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // G402: explicit opt-in, logged at start
		log.Warn("k8s workload attestation: the kubelet's certificate is NOT verified (--k8s-kubelet-skip-verify)")
	} else {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("k8sattest: kubelet CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("k8sattest: kubelet CA %s: no PEM certificates", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, MaxIdleConns: 2, IdleConnTimeout: time.Minute}
	return &Attestor{
		cfg: cfg, log: log, url: strings.TrimSuffix(cfg.KubeletURL, "/") + "/pods",
		http: &http.Client{Transport: tr, Timeout: cfg.HTTPTimeout},
	}, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Attest returns the k8s selectors of process pid, or none (and no error)
// when it runs in no pod. A pod or container not yet in the kubelet's
// list is waited for up to RetryFor; then ErrNotFound.
func (a *Attestor) Attest(ctx context.Context, pid int32) ([]string, error) {
	f, err := os.Open(filepath.Join(a.cfg.ProcRoot, strconv.Itoa(int(pid)), "cgroup"))
	if err != nil {
		return nil, fmt.Errorf("k8sattest: pid %d: %w", pid, err)
	}
	c, inPod, err := ParseCgroup(f)
	f.Close()
	if err != nil || !inPod {
		return nil, err
	}
	deadline := a.cfg.Clock().Add(a.cfg.RetryFor)
	for {
		p, cs, err := a.lookup(ctx, c)
		if err == nil {
			sels := p.selectors(cs)
			a.log.DebugContext(ctx, "k8s workload attested", "pid", pid, "pod", p.Metadata.Namespace+"/"+p.Metadata.Name, "container", cs.Name, "selectors", sels)
			return sels, nil
		}
		if !errors.Is(err, ErrNotFound) || !a.cfg.Clock().Before(deadline) {
			return nil, err
		}
		if backoff.Sleep(ctx, a.cfg.RetryEvery) != nil {
			return nil, fmt.Errorf("k8sattest: %w (gave up: %w)", err, ctx.Err())
		}
	}
}

// lookup finds c in the cached pod list, fetching a new list when the
// cache is older than CacheTTL or (once per RetryEvery) when c is missing.
func (a *Attestor) lookup(ctx context.Context, c Container) (*pod, containerStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	age := a.cfg.Clock().Sub(a.fetched)
	if age < a.cfg.CacheTTL {
		if p, cs, ok := find(a.pods, c); ok {
			return p, cs, nil
		}
		if age < a.cfg.RetryEvery {
			return nil, containerStatus{}, notFound(c)
		}
	}
	pods, err := a.fetch(ctx)
	if err != nil {
		return nil, containerStatus{}, err
	}
	a.pods, a.fetched = pods, a.cfg.Clock()
	if p, cs, ok := find(pods, c); ok {
		return p, cs, nil
	}
	return nil, containerStatus{}, notFound(c)
}

func notFound(c Container) error {
	return fmt.Errorf("%w: no pod %s with container %s on this node's kubelet", ErrNotFound, c.PodUID, c.ID)
}

func find(pods []pod, c Container) (*pod, containerStatus, bool) {
	for i := range pods {
		if pods[i].Metadata.UID != c.PodUID {
			continue
		}
		cs, ok := pods[i].findContainer(c.ID)
		return &pods[i], cs, ok
	}
	return nil, containerStatus{}, false
}

// fetch GETs the kubelet's pod list.
func (a *Attestor) fetch(ctx context.Context) ([]pod, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url, nil)
	if err != nil {
		return nil, fmt.Errorf("k8sattest: kubelet: %w", err)
	}
	if a.cfg.TokenFile != "-" {
		tok, err := os.ReadFile(a.cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("k8sattest: service account token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("k8sattest: kubelet: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		return nil, fmt.Errorf("k8sattest: kubelet GET /pods: %s: %q", resp.Status, strings.TrimSpace(string(msg)))
	}
	var list podList
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxPodListBytes))
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("k8sattest: kubelet pod list: %w", err)
	}
	if list.Kind != "PodList" {
		return nil, fmt.Errorf("k8sattest: kubelet pod list: kind %q, want PodList", list.Kind)
	}
	return list.Items, nil
}
