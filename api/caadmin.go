package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
)

// CAManager manages the CA root keys (implemented by internal/server/keys'
// Manager over ha.Node and the signer package).
type CAManager interface {
	// ListRoots returns the roots with what each is in the cluster and on
	// each node (cataint.go).
	ListRoots() []CARootView
	SigningMode() string
	// PrepareRoot opens keyURI (empty: a new dev soft key), self-tests it,
	// makes its self-signed root certificate and records it as prepared
	// (in the bundle, not yet signing).
	PrepareRoot(ctx context.Context, keyURI string, ttl time.Duration) (ha.CARoot, error)
	// ActivateRoot checks that this node can sign with the prepared root's
	// key, that every voter reported it can, and that the root has been
	// published for the publish window (unless force: then it returns a
	// warning), and makes it the active root.
	ActivateRoot(ctx context.Context, id string, force bool) (ha.CARoot, string, error)
	// TaintKey taints a replaced root (ha.TaintX509) or a JWT key
	// (ha.TaintJWT).
	TaintKey(ctx context.Context, kind, id string) error
	// Tainted returns the tainted roots (DER) and JWT key IDs.
	Tainted() (roots [][]byte, jwtKeyIDs []string)
}

// ErrCAKey marks a root key the CAManager cannot use (bad URI, key not
// found, self-test failed). Maps to InvalidArgument.
var ErrCAKey = errors.New("unusable CA key")

func (a *adminService) caManager() (CAManager, error) {
	if a.s.cfg.CA == nil {
		return nil, fmt.Errorf("api: ca roots: no CA manager configured: %w", ha.ErrUnavailable)
	}
	return a.s.cfg.CA, nil
}

func (a *adminService) ListCARoots(ctx context.Context, _ *tier0v1.ListCARootsRequest) (*tier0v1.ListCARootsResponse, error) {
	m, err := a.caManager()
	if err != nil {
		return nil, a.s.toStatus(ctx, "ListCARoots", err)
	}
	resp := &tier0v1.ListCARootsResponse{SigningMode: m.SigningMode()}
	for _, v := range m.ListRoots() {
		resp.Roots = append(resp.Roots, caRootViewToProto(v))
	}
	return resp, nil
}

func (a *adminService) PrepareCARoot(ctx context.Context, req *tier0v1.PrepareCARootRequest) (*tier0v1.PrepareCARootResponse, error) {
	const method = "PrepareCARoot"
	m, err := a.caManager()
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	if req.GetTtlSeconds() < 0 {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: negative ttl", errBadInput))
	}
	r, err := m.PrepareRoot(ctx, req.GetSignerUri(), time.Duration(req.GetTtlSeconds())*time.Second)
	if err != nil {
		return nil, a.s.toStatus(ctx, method, caKeyErr(err))
	}
	a.s.log.InfoContext(ctx, "ca root prepared", "id", r.ID, "key", r.KeyID, "by", callerFrom(ctx).id.String())
	return &tier0v1.PrepareCARootResponse{Root: caRootToProto(r)}, nil
}

func (a *adminService) ActivateCARoot(ctx context.Context, req *tier0v1.ActivateCARootRequest) (*tier0v1.ActivateCARootResponse, error) {
	const method = "ActivateCARoot"
	m, err := a.caManager()
	if err != nil {
		return nil, a.s.toStatus(ctx, method, err)
	}
	if req.GetId() == "" {
		return nil, a.s.toStatus(ctx, method, fmt.Errorf("%w: root id is required", errBadInput))
	}
	r, warning, err := m.ActivateRoot(ctx, req.GetId(), req.GetForce())
	if err != nil {
		return nil, a.s.toStatus(ctx, method, caKeyErr(err))
	}
	if warning != "" {
		a.s.log.WarnContext(ctx, "ca root activated with --force", "id", r.ID, "warning", warning, "by", callerFrom(ctx).id.String())
	}
	a.s.log.InfoContext(ctx, "ca root activated", "id", r.ID, "key", r.KeyID, "by", callerFrom(ctx).id.String())
	return &tier0v1.ActivateCARootResponse{Root: caRootToProto(r), Warning: warning}, nil
}

// caKeyErr turns ErrCAKey into bad input; ha errors map as usual, and so
// does a key whose HSM/KMS is down (Unavailable: retry later).
func caKeyErr(err error) error {
	if isSignerUnavailable(err) {
		return err
	}
	if errors.Is(err, ErrCAKey) || errors.Is(err, ha.ErrInvalid) {
		return fmt.Errorf("%w: %v", errBadInput, err)
	}
	return err
}

func caRootToProto(r ha.CARoot) *tier0v1.CARoot {
	unix := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.Unix()
	}
	return &tier0v1.CARoot{
		Id: r.ID, State: r.State, KeyId: r.KeyID, NotAfter: unix(r.NotAfter),
		PreparedAt: unix(r.PreparedAt), ActivatedAt: unix(r.ActivatedAt), RetiredAt: unix(r.RetiredAt),
		CertDer: r.CertDER,
	}
}
