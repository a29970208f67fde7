package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
)

// /healthz codes (docs/OPERATIONS.md "Health endpoints"), after Vault's
// sys/health: a load balancer or script tells the roles apart by the code
// alone, where /readyz (the Kubernetes readiness probe) answers 200 for
// every node that can issue.
const (
	healthLeader   = http.StatusOK                 // ready, raft leader
	healthFollower = http.StatusTooManyRequests    // 429: ready follower (standby); 200 with ?standbyok
	healthNotReady = http.StatusServiceUnavailable // 503: cannot issue now (the reasons as /readyz)
)

// role is "leader", "follower" or the raft state in lower case.
func role(n *ha.Node) string {
	if n == nil {
		return "starting"
	}
	if n.IsLeader() {
		return "leader"
	}
	return strings.ToLower(n.Status().State)
}

// healthz answers the role's code; ?verbose adds this node's status as
// JSON (the MemberStatus of `tier0 cluster status`); ?standbyok makes a
// ready follower 200.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	m := s.memberStatus()
	n := s.node.Load()
	code, text := healthLeader, "ok: leader"
	switch {
	case !m.Healthy:
		code, text = healthNotReady, "not ready: "+strings.Join(m.NotReady, "; ")
	case !n.IsLeader():
		code, text = healthFollower, "ok: follower of "+m.LeaderId
		if q.Has("standbyok") && q.Get("standbyok") != "false" {
			code = http.StatusOK
		}
	}
	w.Header().Set("Tier0-Role", role(n))
	if !q.Has("verbose") || q.Get("verbose") == "false" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		_, _ = fmt.Fprintln(w, text)
		return
	}
	b, err := verboseJSON(role(n), m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// verboseJSON is m with every field (zeros too), snake_case names, plus
// "role".
func verboseJSON(role string, m *tier0v1.MemberStatus) ([]byte, error) {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("server: healthz: %w", err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("server: healthz: %w", err)
	}
	// 64-bit integers are JSON strings in protojson: numbers here.
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if v, ok := obj[string(f.Name())].(string); ok && f.Kind() != protoreflect.StringKind {
			if x, err := strconv.ParseInt(v, 10, 64); err == nil {
				obj[string(f.Name())] = x
			} else if u, err := strconv.ParseUint(v, 10, 64); err == nil {
				obj[string(f.Name())] = u
			}
		}
	}
	obj["role"] = role
	return json.MarshalIndent(obj, "", "  ")
}
