package main

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
)

// jwtCache keeps minted JWT-SVIDs by SPIFFE ID and audience until half of
// their lifetime is left.
type jwtCache struct {
	mu     sync.Mutex
	tokens map[string]jwtToken
}

type jwtToken struct {
	token         string
	issued, until time.Time
}

func jwtKey(id string, aud []string) string {
	a := slices.Clone(aud)
	slices.Sort(a)
	return id + "\x00" + strings.Join(a, "\x00")
}

// FetchJWTSVID returns JWT-SVIDs for the requested audience: for spiffe_id
// if given (it must be one of the caller's), else for each of its IDs.
func (w *workloadAPI) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	p, err := w.attest(ctx, "FetchJWTSVID")
	if err != nil {
		return nil, err
	}
	if len(req.GetAudience()) == 0 || slices.Contains(req.GetAudience(), "") {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	ids := w.c.matching(p.workload)
	if id := req.GetSpiffeId(); id != "" {
		if !slices.Contains(ids, id) {
			w.e.logger().WarnContext(ctx, "workload denied a jwt-svid", "spiffe_id", id, "pid", p.pid, "uid", p.workload.UID)
			return nil, status.Errorf(codes.PermissionDenied, "no identity issued for %s", id)
		}
		ids = []string{id}
	}
	resp := &workload.JWTSVIDResponse{}
	for _, id := range ids {
		tok, err := w.jwtFor(ctx, id, req.GetAudience())
		if err != nil {
			return nil, err
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id, Svid: tok})
	}
	return resp, nil
}

func (w *workloadAPI) jwtFor(ctx context.Context, id string, aud []string) (string, error) {
	key := jwtKey(id, aud)
	now := w.e.now()
	w.jwts.mu.Lock()
	t, ok := w.jwts.tokens[key]
	w.jwts.mu.Unlock()
	if ok && w.a.taintedJWT(t.token) {
		ok = false // signed by a tainted key: never served again
	}
	if ok && now.Before(t.issued.Add(t.until.Sub(t.issued)/2)) {
		return t.token, nil
	}
	cl, err := w.e.dial(ctx, w.a)
	if err != nil {
		return "", status.Errorf(codes.Unavailable, "dial tier0: %v", err)
	}
	defer cl.Close()
	resp, err := cl.Agent().MintJWTSVID(ctx, &tier0v1.MintJWTSVIDRequest{SpiffeId: id, Audience: aud})
	if err != nil {
		if ok && now.Before(t.until) {
			return t.token, nil // the CA is unreachable: serve the cached token while valid
		}
		if st, isStatus := status.FromError(err); isStatus {
			return "", status.Errorf(st.Code(), "mint jwt-svid: %s", st.Message())
		}
		return "", status.Errorf(codes.Unavailable, "mint jwt-svid: %v", describe(err))
	}
	w.jwts.mu.Lock()
	defer w.jwts.mu.Unlock()
	if w.jwts.tokens == nil {
		w.jwts.tokens = map[string]jwtToken{}
	}
	for k, old := range w.jwts.tokens {
		if !now.Before(old.until) {
			delete(w.jwts.tokens, k)
		}
	}
	w.jwts.tokens[key] = jwtToken{token: resp.GetToken(), issued: now, until: time.Unix(resp.GetExpiresAt(), 0)}
	return resp.GetToken(), nil
}

// FetchJWTBundles streams the JWT bundles (JWKS) of our trust domain and
// of the federated ones the caller's entries name.
func (w *workloadAPI) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream workload.SpiffeWorkloadAPI_FetchJWTBundlesServer) error {
	p, err := w.attest(stream.Context(), "FetchJWTBundles")
	if err != nil {
		return err
	}
	return streamChanges(stream.Context(), w.c, p, stream.Send, func(v view) (*workload.JWTBundlesResponse, error) {
		resp := &workload.JWTBundlesResponse{Bundles: map[string][]byte{}}
		for _, b := range w.a.jwtBundles(v.federates).Bundles() {
			raw, err := b.Marshal()
			if err != nil {
				return nil, status.Errorf(codes.Internal, "marshal jwt bundle: %v", err)
			}
			resp.Bundles[b.TrustDomain().IDString()] = raw
		}
		return resp, nil
	})
}

// ValidateJWTSVID checks a token against our JWT keys and those of the
// federated trust domains the caller's entries name, and the audience. A token signed by a key not yet in the agent's bundle makes
// the agent refresh the bundle once and try again.
func (w *workloadAPI) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	p, err := w.attest(ctx, "ValidateJWTSVID")
	if err != nil {
		return nil, err
	}
	v, _, _ := w.c.snapshot(p.workload)
	if req.GetAudience() == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.GetSvid() == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	svid, err := jwtsvid.ParseAndValidate(req.GetSvid(), w.a.jwtBundles(v.federates), []string{req.GetAudience()})
	if err != nil && strings.Contains(err.Error(), "not found") {
		if cl, derr := w.e.dial(ctx, w.a); derr == nil {
			if changed, _ := w.e.refreshBundle(ctx, cl, w.a); changed {
				w.c.notify()
				svid, err = jwtsvid.ParseAndValidate(req.GetSvid(), w.a.jwtBundles(v.federates), []string{req.GetAudience()})
			}
			cl.Close()
		}
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	claims, err := structpb.NewStruct(svid.Claims)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: claims}, nil
}
