package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type statusJSON struct {
	LeaderID string   `json:"leader_id"`
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"`
	Members  []struct {
		NodeID        string `json:"node_id"`
		APIAddress    string `json:"api_address"`
		RaftAddress   string `json:"raft_address"`
		Suffrage      string `json:"suffrage"`
		State         string `json:"state"`
		Leader        bool   `json:"leader"`
		LastContactMs int64  `json:"last_contact_ms"`
		AppliedIndex  uint64 `json:"applied_index"`
		CommitIndex   uint64 `json:"commit_index"`
		Healthy       bool   `json:"healthy"`
		Version       string `json:"version"`
		Error         string `json:"error"`
	} `json:"members"`
}

// TestClusterStatusEveryMember: `tier0 cluster status` shows every member
// as it sees itself and exits 1 once a voter is down and again once there
// is no leader; /healthz tells leader (200), follower (429) and not ready
// (503) apart; `tier0 healthcheck`, `tier0 bundle show` and
// `transfer-leadership` say what they found or did.
func TestClusterStatusEveryMember(t *testing.T) {
	c := startCluster(t, 3)
	l := c.leader()
	var st statusJSON
	// Followers have a last contact once they have heard a heartbeat.
	pollUntil(t, 30*time.Second, func() bool {
		out, err := c.nodes[l].cli("cluster", "status", "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		for _, m := range st.Members {
			if m.LastContactMs < 0 {
				return false
			}
		}
		return st.Healthy && len(st.Members) == 3
	})
	leaders := 0
	for _, m := range st.Members {
		i := int(m.NodeID[len(m.NodeID)-1] - '1')
		if m.APIAddress != c.apis[i] || m.Suffrage != "Voter" || !m.Healthy || m.Version == "" || m.AppliedIndex == 0 || m.Error != "" {
			t.Errorf("member %+v", m)
		}
		if m.Leader {
			leaders++
			if m.NodeID != nodeName(l) || m.State != "Leader" || m.LastContactMs != 0 {
				t.Errorf("leader row %+v, want %s", m, nodeName(l))
			}
		}
	}
	if leaders != 1 || st.LeaderID != nodeName(l) {
		t.Fatalf("%d leader rows, leader_id %q", leaders, st.LeaderID)
	}
	table := must(c.nodes[l].cli("cluster", "status"))
	for i := range c.nodes {
		if !strings.Contains(table, c.apis[i]) {
			t.Fatalf("table lacks %s's API address:\n%s", nodeName(i), table)
		}
	}
	if strings.Count(table, " yes ") != 3 {
		t.Fatalf("want 3 healthy rows:\n%s", table)
	}

	// Health codes and healthcheck.
	f := (l + 1) % 3
	for _, tc := range []struct {
		p    *proc
		path string
		code int
	}{
		{c.nodes[l], "/healthz", http.StatusOK},
		{c.nodes[f], "/healthz", http.StatusTooManyRequests},
		{c.nodes[f], "/healthz?standbyok=true", http.StatusOK},
		{c.nodes[f], "/readyz", http.StatusOK},
	} {
		resp, err := http.Get("http://" + tc.p.info.HTTP + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.p.dataDir, tc.path, resp.StatusCode, tc.code)
		}
	}
	if out := must(c.nodes[f].cli("healthcheck")); !strings.HasPrefix(out, "ok: leader "+nodeName(l)) {
		t.Fatalf("healthcheck: %q", out)
	}
	var v struct {
		Role string `json:"role"`
	}
	if err := json.Unmarshal([]byte(must(c.nodes[f].cli("healthcheck", "--verbose"))), &v); err != nil || v.Role != "follower" {
		t.Fatalf("healthcheck --verbose: %v %+v", err, v)
	}

	// bundle show: the roots the nodes hold.
	pemOut := must(c.nodes[f].cli("bundle", "show"))
	if want := string(must(os.ReadFile(filepath.Join(c.nodes[l].dataDir, "bundle.pem")))); pemOut != want {
		t.Fatalf("bundle show:\n%s\nwant DATA/bundle.pem:\n%s", pemOut, want)
	}
	if js := must(c.nodes[f].cli("bundle", "show", "-o", "json")); !strings.Contains(js, `"use":"x509-svid"`) && !strings.Contains(js, `"use": "x509-svid"`) {
		t.Fatalf("bundle show -o json: %s", js)
	}

	// transfer-leadership moves it (then the old leader is a follower).
	out := must(c.nodes[f].cli("cluster", "transfer-leadership", "--to", nodeName(f)))
	if want := "transferred leadership to " + nodeName(f); !strings.HasPrefix(out, want) {
		t.Fatalf("transfer-leadership: %q, want %q", out, want)
	}
	l = f

	// A voter down: exit 1, the row says unreachable.
	down := (l + 1) % 3
	c.nodes[down].kill()
	out, err := c.nodes[l].cli("cluster", "status")
	if err == nil || !strings.Contains(out, "unreachable") || !strings.Contains(err.Error(), "voter "+nodeName(down)) {
		t.Fatalf("status with %s down: %v\n%s", nodeName(down), err, out)
	}
	// No leader: exit 1 naming it.
	c.nodes[(l+2)%3].kill()
	pollUntil(t, 30*time.Second, func() bool {
		out, err = c.nodes[l].cli("cluster", "status")
		return err != nil && strings.Contains(err.Error(), "no leader")
	})
	if _, err := c.nodes[l].cli("healthcheck"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("healthcheck without a leader: %v", err)
	}
}
