package nodeattest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// k8s_psat: a Kubernetes projected service-account token of the agent's
// pod, verified offline against the cluster's OIDC issuer JWKS (the
// apiserver's /openid/v1/jwks), or by the API server (token_review).
//
// Config:
//
//	clusters:
//	  prod:
//	    jwks_file: /etc/tier0/prod-jwks.json   # or jwks_url: https://..., or token_review: {url, ca_file, token_file}
//	    issuer: https://kubernetes.default.svc.cluster.local   # optional: iss must match
//	    service_account_allow_list: [tier0:tier0-agent]       # NAMESPACE:NAME, required
//	    kube_api: {url, ca_file, token_file}   # optional: pod and node label selectors (k8sapi.go)
//	allow_reattestation: false   # true: a pod may attest again (else its UID is used once per replay_window)
//	replay_window: 720h          # default 720h, at most 8760h
//	agent_name: "k8s_psat.{{.Cluster}}.{{.NodeUID}}"           # optional template
//
// The token's audience must include spiffe://TD (the trust domain). Each
// token is used once (until it expires); a pod's UID once unless
// allow_reattestation.
type k8sPSATConfig struct {
	Clusters           map[string]k8sCluster `yaml:"clusters"`
	AllowReattestation bool                  `yaml:"allow_reattestation"`
	ReplayWindow       time.Duration         `yaml:"replay_window"`
	AgentName          string                `yaml:"agent_name"`
}

type k8sCluster struct {
	TokenReview     *tokenReviewConfig `yaml:"token_review"` // instead of jwks_*: ask the API server (tokenreview.go)
	JWKSFile        string             `yaml:"jwks_file"`
	JWKSURL         string             `yaml:"jwks_url"`
	Issuer          string             `yaml:"issuer"`
	ServiceAccounts []string           `yaml:"service_account_allow_list"`
	KubeAPI         *tokenReviewConfig `yaml:"kube_api"` // pod and node label selectors (k8sapi.go)
}

type k8sPSAT struct {
	cfg      k8sPSATConfig
	audience string
	clock    func() time.Time
	keys     map[string]*jwks
	reviews  map[string]*tokenReviewer
	apis     map[string]*tokenReviewer // kube_api by cluster
	name     nameTemplate
	window   time.Duration
}

// K8sPSATEvidence is the evidence an agent sends: the cluster it runs in
// (as the server names it) and its projected token.
type K8sPSATEvidence struct {
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// k8sClaims are the kubernetes.io claims of a projected token.
type k8sClaims struct {
	K8s k8sClaimsBody `json:"kubernetes.io"`
}

type k8sClaimsBody struct {
	Namespace string `json:"namespace"`
	Pod       struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"pod"`
	ServiceAccount struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"serviceaccount"`
	Node struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"node"`
}

func newK8sPSAT(cfg Config, text string) (Attestor, error) {
	a := &k8sPSAT{audience: cfg.TrustDomain.IDString(), clock: cfg.Clock, keys: map[string]*jwks{}, reviews: map[string]*tokenReviewer{}, apis: map[string]*tokenReviewer{}}
	if err := decodeSection(text, &a.cfg); err != nil {
		return nil, err
	}
	if len(a.cfg.Clusters) == 0 {
		return nil, fmt.Errorf("config: clusters: at least one is required")
	}
	var err error
	if a.window, err = replayWindow(a.cfg.ReplayWindow); err != nil {
		return nil, err
	}
	for name, c := range a.cfg.Clusters {
		if len(c.ServiceAccounts) == 0 {
			return nil, fmt.Errorf("config: cluster %q: service_account_allow_list is required", name)
		}
		for _, sa := range c.ServiceAccounts {
			if ns, n, ok := strings.Cut(sa, ":"); !ok || ns == "" || n == "" {
				return nil, fmt.Errorf("config: cluster %q: service account %q: want NAMESPACE:NAME", name, sa)
			}
		}
		if c.KubeAPI != nil {
			api, err := newTokenReviewer(*c.KubeAPI)
			if err != nil {
				return nil, fmt.Errorf("cluster %q: kube_api: %w", name, err)
			}
			a.apis[name] = api
		}
		if c.TokenReview != nil {
			if c.JWKSFile != "" || c.JWKSURL != "" {
				return nil, fmt.Errorf("config: cluster %q: token_review or jwks_*, not both", name)
			}
			r, err := newTokenReviewer(*c.TokenReview)
			if err != nil {
				return nil, fmt.Errorf("cluster %q: %w", name, err)
			}
			a.reviews[name] = r
			continue
		}
		k, err := newJWKS(c.JWKSFile, c.JWKSURL, cfg.Clock)
		if err != nil {
			return nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		a.keys[name] = k
	}
	if a.name, err = parseNameTemplate(a.cfg.AgentName, "k8s_psat.{{.Cluster}}.{{.NodeUID}}"); err != nil {
		return nil, err
	}
	return a, nil
}

func (*k8sPSAT) Name() string { return K8sPSAT }

func (a *k8sPSAT) Attest(ctx context.Context, evidence []byte, _ ChallengeFunc) (Result, error) {
	var ev K8sPSATEvidence
	if err := strictJSON(evidence, &ev); err != nil {
		return Result{}, err
	}
	if ev.Cluster == "" || ev.Token == "" {
		return Result{}, bad("k8s_psat: cluster and token are required")
	}
	cl, ok := a.cfg.Clusters[ev.Cluster]
	if !ok {
		return Result{}, denied("k8s_psat: cluster %q is not configured", ev.Cluster)
	}
	var k k8sClaims
	var exp time.Time
	if rv := a.reviews[ev.Cluster]; rv != nil {
		var err error
		if k, exp, err = rv.review(ctx, ev.Token, a.audience); err != nil {
			return Result{}, fmt.Errorf("k8s_psat: cluster %q: %w", ev.Cluster, err)
		}
	} else {
		c, err := verifyJWT(ctx, a.keys[ev.Cluster], ev.Token, cl.Issuer, a.audience, a.clock(), &k)
		if err != nil {
			return Result{}, fmt.Errorf("k8s_psat: cluster %q: %w", ev.Cluster, err)
		}
		exp = c.Expiry.Time()
	}
	kc := k.K8s
	if kc.Namespace == "" || kc.ServiceAccount.Name == "" || kc.Pod.UID == "" || kc.Node.Name == "" {
		return Result{}, denied("k8s_psat: not a projected pod token (kubernetes.io namespace, serviceaccount, pod and node are required)")
	}
	sa := kc.Namespace + ":" + kc.ServiceAccount.Name
	if !slices.Contains(cl.ServiceAccounts, sa) {
		return Result{}, denied("k8s_psat: cluster %q: service account %s is not allowed", ev.Cluster, sa)
	}
	nodeUID := kc.Node.UID
	if nodeUID == "" {
		nodeUID = kc.Node.Name
	}
	name, err := a.name.name(struct{ Cluster, NodeName, NodeUID, PodUID string }{
		segment(ev.Cluster), segment(kc.Node.Name), segment(nodeUID), segment(kc.Pod.UID)})
	if err != nil {
		return Result{}, err
	}
	p := "k8s_psat:"
	sels := []string{p + "cluster:" + ev.Cluster, p + "agent_ns:" + kc.Namespace, p + "agent_sa:" + kc.ServiceAccount.Name,
		p + "agent_pod_name:" + kc.Pod.Name, p + "agent_pod_uid:" + kc.Pod.UID, p + "agent_node_name:" + kc.Node.Name}
	if kc.Node.UID != "" {
		sels = append(sels, p+"agent_node_uid:"+kc.Node.UID)
	}
	if api := a.apis[ev.Cluster]; api != nil {
		more, err := kubeSelectors(ctx, api, ev.Cluster, kc)
		if err != nil {
			return Result{}, err
		}
		sels = append(sels, more...)
	}
	replay := []ReplayKey{{Key: hashKey(K8sPSAT, []byte(ev.Token)), Until: exp.Add(time.Minute)}}
	if !a.cfg.AllowReattestation {
		replay = append(replay, ReplayKey{Key: "k8s_psat:pod_uid:" + ev.Cluster + ":" + kc.Pod.UID, Until: a.clock().Add(a.window)})
	}
	return Result{AgentName: name, Selectors: sortedSelectors(sels), Replay: replay,
		Detail: fmt.Sprintf("cluster %s, %s, pod %s, node %s", ev.Cluster, sa, kc.Pod.UID, kc.Node.Name)}, nil
}

// strictJSON decodes evidence, refusing unknown fields and trailing data.
func strictJSON(evidence []byte, v any) error {
	if len(evidence) > MaxEvidence {
		return bad("larger than %d bytes", MaxEvidence)
	}
	dec := json.NewDecoder(strings.NewReader(string(evidence)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bad("%v", err)
	}
	if dec.More() {
		return bad("trailing data")
	}
	return nil
}
