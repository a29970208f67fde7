package api

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

type callerKey struct{}

// caller is the authenticated identity attached to a request context.
type caller struct {
	id   spiffeid.ID
	role roles.Role // roles.None: not one of tier0's roles
	name string     // agent or node name
}

func callerFrom(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// methodRoles says which roles may call each service (default deny: a
// service not listed here is refused).
var methodRoles = map[string][]roles.Role{
	"/tier0.v1.Bootstrap/":  nil, // TLS only: the caller has no SVID yet
	"/tier0.v1.Agent/":      {roles.Agent},
	"/tier0.v1.Admin/":      {roles.Admin},
	"/tier0.v1.Audit/":      {roles.Auditor, roles.Admin},
	"/tier0.v1.AuditLog/":   {roles.Auditor, roles.Admin}, // witnesses cosign with an auditor credential (auditlog.go)
	"/tier0.v1.Federation/": {roles.Admin},
	"/tier0.v1.Backup/":     {roles.Admin},
	"/tier0.v1.Cluster/":    {roles.Admin, roles.Node}, // nodes: ClusterJoin for themselves only (cluster.go)
	"/tier0.v1.AgentAdmin/": {roles.Admin},
	"/tier0.v1.Operator/":   {roles.Admin, roles.Auditor}, // named ones only (agentadmin.go)
	// Single methods (they win over their service's entry).
	"/tier0.v1.Agent/GetBundle": {roles.Agent, roles.Admin, roles.Auditor}, // `tier0 bundle show`
}

func rolesFor(method string) (allowed []roles.Role, open bool, known bool) {
	i := strings.LastIndexByte(method, '/')
	if i < 0 {
		return nil, false, false
	}
	if allowed, known = methodRoles[method]; known {
		return allowed, allowed == nil, known
	}
	allowed, known = methodRoles[method[:i+1]]
	return allowed, known && allowed == nil, known
}

// authn verifies the peer's certificate chain against the current bundle.
// The TLS handshake already proved the peer holds the leaf's private key
// (the server requests, but does not itself verify, client certificates) so
// that a missing or foreign certificate becomes a clear Unauthenticated error
// instead of an opaque handshake failure.
type authn struct {
	td      spiffeid.TrustDomain
	bundles func() *x509bundle.Bundle

	mu    sync.Mutex
	cache map[[32]byte]cachedID // leaf hash -> verified identity

	// check refuses an allowed caller whose credential is no longer
	// current (agentadmin.go checkCredential); nil: none.
	check func(ctx context.Context, method string, c caller) error
}

type cachedID struct {
	id     spiffeid.ID
	bundle *x509bundle.Bundle
}

const authnCacheMax = 65536

func (a *authn) verify(ctx context.Context) (spiffeid.ID, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, errors.New("no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return spiffeid.ID{}, errors.New("not a TLS connection")
	}
	certs := ti.State.PeerCertificates
	if len(certs) == 0 {
		return spiffeid.ID{}, errors.New("no client certificate presented")
	}
	b := a.bundles()
	key := sha256.Sum256(certs[0].Raw)
	a.mu.Lock()
	c, hit := a.cache[key]
	a.mu.Unlock()
	if hit && c.bundle == b {
		return c.id, nil
	}
	id, err := verifyChain(certs, b)
	if err != nil {
		return spiffeid.ID{}, err
	}
	a.mu.Lock()
	if len(a.cache) >= authnCacheMax {
		clear(a.cache)
	}
	a.cache[key] = cachedID{id: id, bundle: b}
	a.mu.Unlock()
	return id, nil
}

// callerID is the verified caller: the one the mint tap (tap.go) already
// verified for this call, else verify's.
func (a *authn) callerID(ctx context.Context) (spiffeid.ID, error) {
	if t := tapFrom(ctx); t != nil && !t.id.IsZero() {
		return t.id, nil
	}
	return a.verify(ctx)
}

func verifyChain(certs []*x509.Certificate, b *x509bundle.Bundle) (spiffeid.ID, error) {
	id, _, err := x509svid.Verify(certs, b)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return id, nil
}

// classify resolves the caller's role (internal/roles: structured match,
// exact trust domain and path segments).
func (a *authn) classify(id spiffeid.ID) caller {
	r, name, _ := roles.Parse(a.td, id)
	return caller{id: id, role: r, name: name}
}

func (a *authn) authorize(ctx context.Context, method string) (context.Context, error) {
	allowed, open, known := rolesFor(method)
	if !known {
		return nil, status.Error(codes.PermissionDenied, "method not allowed")
	}
	if open {
		return ctx, nil
	}
	id, err := a.callerID(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	noteCaller(ctx, id)
	c := a.classify(id)
	for _, r := range allowed {
		if c.role == r {
			if a.check != nil {
				if err := a.check(ctx, method, c); err != nil {
					return nil, err
				}
			}
			// The caller is the actor of every state change it makes
			// (the admin event records, ha/events.go).
			return ha.WithActor(context.WithValue(ctx, callerKey{}, c), id.String()), nil
		}
	}
	return nil, status.Errorf(codes.PermissionDenied, "%s may not call %s", id, method)
}

// unaryAuth authenticates and authorizes each call and records every
// refused one in the decision log (decisions.go).
func (s *Server) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, note := withNote(ctx, req)
	actx, err := s.authn.authorize(ctx, info.FullMethod)
	if err != nil {
		s.metrics.denied.WithLabelValues(info.FullMethod).Inc()
		s.log.InfoContext(ctx, "request refused", "method", info.FullMethod, "err", err)
		s.recordCall(ctx, info.FullMethod, note, err)
		return nil, err
	}
	resp, err := handler(actx, req)
	s.logOperatorCall(actx, info.FullMethod, err) // agentadmin.go
	s.recordCall(actx, info.FullMethod, note, err)
	return resp, err
}
