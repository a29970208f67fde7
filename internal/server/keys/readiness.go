package keys

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/signer"
)

// Key readiness (ha/castate_gate.go): every second, on its own goroutine
// (a slow HSM/KMS must not delay the root switch in reconcile), this node
// checks that it can sign with the key of every prepared or active root
// (open, matching public key, a test signature; a prepared root's key
// again every minute, a failed one every 10 s), and reports the result and
// the root it issues from through the log whenever the report changes.
// `tier0 ca activate` needs every voter's report; `tier0 ca list` shows
// them.

const (
	recheckFailedEvery = 10 * time.Second // a key this node could not use is tried again this often
	recheckReadyEvery  = time.Minute      // and a prepared root's key it could use
	reportEvery        = time.Second
	reportRetryEvery   = 5 * time.Second // a report that could not be written is retried this often
	reportTimeout      = 10 * time.Second
)

// reporter is the manager's readiness state (only reportLoop uses it,
// except switchErr: only reconcile).
type reporter struct {
	switchErr string              // the last failed root switch, logged once
	checks    map[string]keyCheck // by root ID
	failedAt  time.Time           // last failed report
	lastErr   string
}

type keyCheck struct {
	err string // "" = can sign
	at  time.Time
}

// reportLoop runs reportKeys every reportEvery until ctx ends.
func (m *Manager) reportLoop(ctx context.Context) {
	t := time.NewTicker(reportEvery)
	defer t.Stop()
	for {
		m.reportKeys(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkKey opens the root's key and test-signs with it.
func (m *Manager) checkKey(ctx context.Context, r ha.CARoot) string {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	s, err := m.open(ctx, r.KeyURI)
	if err != nil {
		return oneLine(err)
	}
	if cert, err := x509.ParseCertificate(r.CertDER); err != nil || !publicKeyEqual(cert.PublicKey, s.Public()) {
		return "the key does not match the root certificate"
	}
	if _, err := signer.SelfTest(ctx, s); err != nil {
		return oneLine(err)
	}
	return ""
}

func oneLine(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}

// reportKeys checks the keys of the prepared and active roots (a failed
// one again after recheckFailedEvery) and writes this node's report when
// it differs from the one in raft state.
func (m *Manager) reportKeys(ctx context.Context) {
	st := m.cfg.State.CAState()
	if m.rep.checks == nil {
		m.rep.checks = map[string]keyCheck{}
	}
	m.mu.Lock()
	issuing := m.activeID
	m.mu.Unlock()
	rep := ha.NodeCAKeys{Node: m.cfg.State.LocalNodeID(), Issuing: issuing}
	now := time.Now()
	for _, r := range st.Roots {
		if r.State == ha.RootRetired {
			continue
		}
		c, ok := m.rep.checks[r.ID]
		if !ok || (c.err != "" && now.Sub(c.at) >= recheckFailedEvery) || (r.State == ha.RootPrepared && now.Sub(c.at) >= recheckReadyEvery) {
			prev := c.err
			c = keyCheck{err: m.checkKey(ctx, r), at: now}
			if ctx.Err() != nil {
				return
			}
			m.rep.checks[r.ID] = c
			if c.err != "" && c.err != prev { // once per distinct reason
				m.log.Warn("keys: this node cannot sign with the key of a CA root; `tier0 ca activate` refuses it until every voter can", "root", r.ID, "state", r.State, "err", c.err)
			}
		}
		if c.err == "" {
			rep.Ready = append(rep.Ready, r.ID)
		} else {
			if rep.Errors == nil {
				rep.Errors = map[string]string{}
			}
			rep.Errors[r.ID] = c.err
		}
	}
	if prev, ok := st.Node(rep.Node); ok && prev.Same(rep) {
		return
	}
	if now.Sub(m.rep.failedAt) < reportRetryEvery {
		return
	}
	rep.At = now.UTC()
	rctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	if err := m.cfg.State.ReportCAKeys(rctx, rep); err != nil {
		m.rep.failedAt = now
		if msg := err.Error(); msg != m.rep.lastErr && ctx.Err() == nil {
			m.rep.lastErr = msg
			m.log.Warn("keys: report CA key readiness failed; retrying", "err", err)
		}
		return
	}
	m.rep.failedAt, m.rep.lastErr = time.Time{}, ""
	m.log.Info("keys: CA key readiness reported", "issuing", rep.Issuing, "ready", strings.Join(rep.Ready, ","), "not_ready", len(rep.Errors))
}

// refuseSoftKeyInCluster: a key made by `tier0 ca prepare` without
// --signer exists on the serving node only.
func (m *Manager) refuseSoftKeyInCluster() error {
	voters, err := m.cfg.State.Voters()
	if err != nil {
		return err
	}
	if len(voters) <= 1 {
		return nil
	}
	return fmt.Errorf("keys: `tier0 ca prepare` without --signer makes a DEV-ONLY soft key on this node only, and the other voters of this %d-node cluster could not sign with it, so `tier0 ca activate` would refuse it: pass --signer with a key every node can open (pkcs11:, awskms:, gcpkms:, or a soft: file present on every node): %w",
		len(voters), api.ErrCAKey)
}

// gateActivation runs ha.GateActivation against the current voters.
func (m *Manager) gateActivation(id string, force bool) (string, error) {
	voters, err := m.cfg.State.Voters()
	if err != nil {
		return "", err
	}
	warning, err := ha.GateActivation(m.cfg.State.CAState(), id, voters, time.Now(), m.cfg.PublishWindow, force)
	if err != nil {
		return "", fmt.Errorf("keys: %w", err)
	}
	return warning, nil
}

// ListRoots returns the CA roots in raft state with their state in the
// cluster and on each voter.
func (m *Manager) ListRoots() []api.CARootView {
	st := m.cfg.State.CAState()
	voters, err := m.cfg.State.Voters()
	if err != nil {
		voters = nil
		for _, n := range st.Nodes {
			voters = append(voters, n.Node)
		}
	}
	st = st.ForMembers(voters)
	now := time.Now()
	out := make([]api.CARootView, 0, len(st.Roots))
	for _, r := range st.Roots {
		v := api.CARootView{Root: r, State: st.View(r, now, m.cfg.MaxSVID), Tainted: st.Tainted(ha.TaintX509, r.ID)}
		for _, node := range voters {
			v.Nodes = append(v.Nodes, api.CARootNodeView{Node: node, State: st.NodeView(r, node, now, m.cfg.MaxSVID)})
		}
		out = append(out, v)
	}
	return out
}

// TaintKey taints a replaced root or a JWT key in raft state.
func (m *Manager) TaintKey(ctx context.Context, kind, id string) error {
	if err := m.cfg.State.TaintCAKey(ctx, kind, id); err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	return nil
}

// Tainted returns the certificates of the tainted roots and the tainted
// JWT key IDs that are still published.
func (m *Manager) Tainted() ([][]byte, []string) {
	st := m.cfg.State.CAState()
	var roots [][]byte
	for _, id := range st.TaintedIDs(ha.TaintX509) {
		if r, ok := st.Root(id); ok {
			roots = append(roots, r.CertDER)
		}
	}
	var kids []string
	jwt := st.TaintedIDs(ha.TaintJWT)
	for _, k := range m.cfg.State.TrustState().JWTKeys {
		for _, id := range jwt {
			if k.ID == id {
				kids = append(kids, id)
			}
		}
	}
	return roots, kids
}
