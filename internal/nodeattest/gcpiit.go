package nodeattest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// gcp_iit: a GCE instance identity token (a JWT signed by Google, fetched
// by the agent from the metadata server with audience spiffe://TD and
// format=full), verified against Google's JWKS.
//
// Config:
//
//	jwks_url: https://www.googleapis.com/oauth2/v3/certs   # default; or jwks_file
//	project_allow_list: [my-project]                       # required
//	allow_reattestation: false   # true: an instance may attest again (else its ID is used once per replay_window)
//	replay_window: 720h          # default 720h, at most 8760h
//	agent_name: "gcp_iit.{{.ProjectID}}.{{.InstanceID}}"   # optional template
//	compute_api: {endpoint, token_file}   # optional: label, tag, service account selectors (gcpapi.go)
type gcpIITConfig struct {
	JWKSFile           string        `yaml:"jwks_file"`
	JWKSURL            string        `yaml:"jwks_url"`
	Projects           []string      `yaml:"project_allow_list"`
	AllowReattestation bool          `yaml:"allow_reattestation"`
	ReplayWindow       time.Duration `yaml:"replay_window"`
	AgentName          string        `yaml:"agent_name"`
	ComputeAPI         *gcpAPIConfig `yaml:"compute_api"` // label, tag, service account selectors (gcpapi.go)
}

// GoogleJWKSURL is where Google publishes the keys that sign instance
// identity tokens.
const GoogleJWKSURL = "https://www.googleapis.com/oauth2/v3/certs"

// googleIssuer is the iss of instance identity tokens.
const googleIssuer = "https://accounts.google.com"

type gcpIIT struct {
	cfg      gcpIITConfig
	audience string
	clock    func() time.Time
	keys     *jwks
	name     nameTemplate
	window   time.Duration
	api      *gcpAPI
}

type gcpClaims struct {
	Google struct {
		GCE struct {
			ProjectID     string `json:"project_id"`
			ProjectNumber int64  `json:"project_number"`
			Zone          string `json:"zone"`
			InstanceID    string `json:"instance_id"`
			InstanceName  string `json:"instance_name"`
		} `json:"compute_engine"`
	} `json:"google"`
}

func newGCPIIT(cfg Config, text string) (Attestor, error) {
	a := &gcpIIT{audience: cfg.TrustDomain.IDString(), clock: cfg.Clock}
	if err := decodeSection(text, &a.cfg); err != nil {
		return nil, err
	}
	if len(a.cfg.Projects) == 0 {
		return nil, fmt.Errorf("config: project_allow_list is required")
	}
	if a.cfg.JWKSFile == "" && a.cfg.JWKSURL == "" {
		a.cfg.JWKSURL = GoogleJWKSURL
	}
	var err error
	if a.window, err = replayWindow(a.cfg.ReplayWindow); err != nil {
		return nil, err
	}
	if a.cfg.ComputeAPI != nil {
		if a.api, err = newGCPAPI(*a.cfg.ComputeAPI); err != nil {
			return nil, err
		}
	}
	if a.keys, err = newJWKS(a.cfg.JWKSFile, a.cfg.JWKSURL, cfg.Clock); err != nil {
		return nil, err
	}
	if a.name, err = parseNameTemplate(a.cfg.AgentName, "gcp_iit.{{.ProjectID}}.{{.InstanceID}}"); err != nil {
		return nil, err
	}
	return a, nil
}

func (*gcpIIT) Name() string { return GCPIIT }

// Attest: evidence is the token itself.
func (a *gcpIIT) Attest(ctx context.Context, evidence []byte, _ ChallengeFunc) (Result, error) {
	if len(evidence) == 0 || len(evidence) > MaxEvidence {
		return Result{}, bad("gcp_iit: token empty or larger than %d bytes", MaxEvidence)
	}
	raw := strings.TrimSpace(string(evidence))
	var g gcpClaims
	c, err := verifyJWT(ctx, a.keys, raw, googleIssuer, a.audience, a.clock(), &g)
	if err != nil {
		return Result{}, fmt.Errorf("gcp_iit: %w", err)
	}
	ge := g.Google.GCE
	if ge.ProjectID == "" || ge.InstanceID == "" {
		return Result{}, denied("gcp_iit: the token has no compute_engine claims (request it with format=full)")
	}
	if !allowed(a.cfg.Projects, ge.ProjectID) {
		return Result{}, denied("gcp_iit: project %q is not allowed", ge.ProjectID)
	}
	name, err := a.name.name(struct{ ProjectID, InstanceID, InstanceName, Zone string }{
		segment(ge.ProjectID), segment(ge.InstanceID), segment(ge.InstanceName), segment(ge.Zone)})
	if err != nil {
		return Result{}, err
	}
	p := "gcp_iit:"
	sels := []string{p + "project-id:" + ge.ProjectID, p + "zone:" + ge.Zone, p + "instance-name:" + ge.InstanceName}
	if ge.ProjectNumber != 0 {
		sels = append(sels, p+"project-number:"+strconv.FormatInt(ge.ProjectNumber, 10))
	}
	if a.api != nil {
		more, err := a.api.selectors(ctx, ge.ProjectID, ge.Zone, ge.InstanceName, ge.InstanceID)
		if err != nil {
			return Result{}, err
		}
		sels = append(sels, more...)
	}
	replay := []ReplayKey{{Key: hashKey(GCPIIT, []byte(raw)), Until: c.Expiry.Time().Add(time.Minute)}}
	if !a.cfg.AllowReattestation {
		replay = append(replay, ReplayKey{Key: "gcp_iit:instance:" + ge.ProjectID + ":" + ge.InstanceID, Until: a.clock().Add(a.window)})
	}
	return Result{AgentName: name, Selectors: sortedSelectors(sels), Replay: replay,
		Detail: fmt.Sprintf("project %s, zone %s, instance %s", ge.ProjectID, ge.Zone, ge.InstanceID)}, nil
}
