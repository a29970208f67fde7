package keys

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/hatest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type denyAll struct{}

func (denyAll) Authorize(spiffeid.ID, spiffeid.ID) (ca.Grant, error) {
	return ca.Grant{}, ca.ErrPermissionDenied
}

// newManager is a manager over node with its soft keys in dir.
func newManager(t *testing.T, node *ha.Node, dir string, s Settings, mod ...func(*Config)) *Manager {
	t.Helper()
	cfg := Config{Settings: s, TrustDomain: td, DataDir: dir, State: node, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()}
	for _, f := range mod {
		f(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func startNode(t *testing.T) *ha.Node { return hatest.Node(t) }
