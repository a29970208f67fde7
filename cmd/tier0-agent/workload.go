package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tier0-ca/tier0/cmd/tier0-agent/internal/k8sattest"
)

// workloadHeader is the metadata every Workload API call must carry (SPIFFE
// Workload API spec, section 5.1), so that a browser or SSRF cannot reach
// the socket through a proxy.
const workloadHeader = "workload.spiffe.io"

// workloadAPI serves the SPIFFE Workload API on a Unix socket from the
// agent's cache. Callers are attested by their peer credentials and get
// the SVIDs of the entries whose selectors they match.
type workloadAPI struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	e      *env
	a      *agent
	c      *cache
	socket string
	mode   os.FileMode // of the socket
	creds  peerCreds   // how callers are attested
	sds    sdsNames    // Envoy SDS on the same socket
	jwts   jwtCache
}

func (w *workloadAPI) Name() string { return "workload api" }

func (w *workloadAPI) Run(ctx context.Context) error {
	lis, err := listenUnix(w.socket, w.mode)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.Creds(w.creds),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := checkHeader(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := checkHeader(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	workload.RegisterSpiffeWorkloadAPIServer(srv, w)
	secretv3.RegisterSecretDiscoveryServiceServer(srv, &sdsServer{w: w, names: w.sds})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		srv.Stop()
	}()
	w.e.logger().InfoContext(ctx, "workload api and envoy sds listening", "socket", w.socket)
	err = srv.Serve(lis)
	<-stopped
	_ = os.Remove(w.socket)
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serve %s: %w", w.socket, err)
	}
	return nil
}

// listenUnix listens on path, replacing a stale socket. The directory is
// created 0755 if missing; the socket gets mode (0777 by default: who may
// get what is decided by attestation, not by file permissions).
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("workload api socket: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("workload api socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("workload api socket: %w", err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("workload api socket: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		lis.Close()
		return nil, fmt.Errorf("workload api socket: %w", err)
	}
	return lis, nil
}

// checkHeader requires the security header on Workload API calls. Envoy
// does not send it, so SDS calls go without (as with the SPIRE agent).
func checkHeader(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, "/"+workload.SpiffeWorkloadAPI_ServiceDesc.ServiceName+"/") {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(workloadHeader); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
}

// attest returns the caller and refuses it when it matches no entry.
func (w *workloadAPI) attest(ctx context.Context, method string) (peerInfo, error) {
	p, ok := callerOf(ctx)
	if !ok {
		return p, status.Error(codes.Internal, "caller not attested")
	}
	if err := w.c.waitReady(ctx, 10*time.Second); err != nil {
		return p, status.Error(codes.Unavailable, err.Error())
	}
	log := w.e.logger().With("method", method, "pid", p.pid, "uid", p.workload.UID, "gid", p.workload.GID, "path", p.workload.Path)
	if p.attestErr != nil {
		log.WarnContext(ctx, "workload attestation failed", "err", p.attestErr)
		if errors.Is(p.attestErr, k8sattest.ErrBadCgroup) {
			return p, status.Errorf(codes.PermissionDenied, "workload attestation: %v", p.attestErr)
		}
		return p, status.Errorf(codes.Unavailable, "workload attestation: %v", p.attestErr)
	}
	ids := w.c.matching(p.workload)
	if len(p.workload.Attested) > 0 {
		log = log.With("selectors", p.workload.Attested)
	}
	if len(ids) == 0 {
		log.WarnContext(ctx, "workload denied: no registration entry matches")
		return p, status.Error(codes.PermissionDenied, "no identity issued")
	}
	log.InfoContext(ctx, "workload attested", "spiffe_ids", ids)
	return p, nil
}

// FetchX509SVID streams the caller's SVIDs, sending again whenever one is
// renewed or the bundle changes.
func (w *workloadAPI) FetchX509SVID(_ *workload.X509SVIDRequest, stream workload.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	p, err := w.attest(stream.Context(), "FetchX509SVID")
	if err != nil {
		return err
	}
	return streamChanges(stream.Context(), w.c, p, stream.Send, func(v view) (*workload.X509SVIDResponse, error) {
		if len(v.svids) == 0 || v.pending > 0 {
			return nil, nil // not all minted yet: wait for the cache
		}
		return w.x509Response(v)
	})
}

// streamChanges sends build's response on the stream, and again whenever
// the cache changes and the response with it, until the caller goes away.
// A workload that no longer matches any entry gets PermissionDenied; a nil
// response is not sent.
func streamChanges[T proto.Message](ctx context.Context, c *cache, p peerInfo, send func(T) error, build func(view) (T, error)) error {
	var last T
	sent := false
	for {
		v, matched, changed := c.snapshot(p.workload)
		if !matched {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		resp, err := build(v)
		if err != nil {
			return err
		}
		if resp.ProtoReflect().IsValid() && (!sent || !proto.Equal(resp, last)) {
			if err := send(resp); err != nil {
				return err
			}
			last, sent = resp, true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

func (w *workloadAPI) x509Response(v view) (*workload.X509SVIDResponse, error) {
	bundle := concatDER(w.a.bundle.X509Authorities())
	resp := &workload.X509SVIDResponse{FederatedBundles: w.a.federatedX509(v.federates)}
	for _, s := range v.svids {
		certs, key, err := s.MarshalRaw()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "marshal svid: %v", err)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId: s.ID.String(), X509Svid: certs, X509SvidKey: key, Bundle: bundle,
		})
	}
	return resp, nil
}

// FetchX509Bundles streams the trust bundles: ours and the federated ones
// the caller's entries name.
func (w *workloadAPI) FetchX509Bundles(_ *workload.X509BundlesRequest, stream workload.SpiffeWorkloadAPI_FetchX509BundlesServer) error {
	p, err := w.attest(stream.Context(), "FetchX509Bundles")
	if err != nil {
		return err
	}
	return streamChanges(stream.Context(), w.c, p, stream.Send, func(v view) (*workload.X509BundlesResponse, error) {
		resp := &workload.X509BundlesResponse{Bundles: w.a.federatedX509(v.federates)}
		resp.Bundles[w.a.td.IDString()] = concatDER(w.a.bundle.X509Authorities())
		return resp, nil
	})
}
