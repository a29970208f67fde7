package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// listeners binds every address the node serves before anything is
// written to the data dir, so that a port clash (or a bad bundle endpoint
// certificate or federation roots file) leaves no half-initialised dir.
func (r *run) listen() error {
	cfg := r.s.cfg
	var err error
	if r.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if r.hlis, err = net.Listen("tcp", cfg.HTTPListen); err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	// The raft port too, before anything is written (a joining node would
	// otherwise spend its one-time token first).
	if cfg.Cluster.Enabled() {
		if r.rlis, err = net.Listen("tcp", cfg.Cluster.RaftAddr); err != nil {
			return fmt.Errorf("listen raft: %w", err)
		}
	}
	if be := cfg.BundleEndpoint; be.CertFile != "" || be.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(be.CertFile, be.KeyFile)
		if err != nil {
			return fmt.Errorf("--bundle-endpoint-cert/--bundle-endpoint-key: %w", err)
		}
		r.bundleCert = &cert
	}
	if cfg.BundleEndpoint.Addr != "" {
		if r.blis, err = net.Listen("tcp", cfg.BundleEndpoint.Addr); err != nil {
			return fmt.Errorf("listen bundle endpoint: %w", err)
		}
	}
	if err := r.listenOIDC(); err != nil {
		return err
	}
	if cfg.Pprof != "" {
		if r.plis, err = net.Listen("tcp", cfg.Pprof); err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
	}
	if cfg.FederationWebRoots != "" {
		pem, err := os.ReadFile(cfg.FederationWebRoots)
		if err != nil {
			return fmt.Errorf("--federation-web-roots: %w", err)
		}
		r.webRoots = x509.NewCertPool()
		if !r.webRoots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--federation-web-roots %s: no PEM certificates", cfg.FederationWebRoots)
		}
	}
	return nil
}

// closeListeners closes the listeners no server took over (after a failed
// start).
func (r *run) closeListeners() {
	for _, l := range []*net.Listener{&r.lis, &r.hlis, &r.blis, &r.plis, &r.olis, &r.rlis} {
		if *l != nil {
			_ = (*l).Close()
		}
	}
}

// serveHTTP serves hs on *lis in the serving group until it stops, then
// shuts it down (in-flight requests get up to 5 s).
func (r *run) serveHTTP(name string, lis *net.Listener, hs *http.Server, tlsCfg *tls.Config) {
	l := *lis
	*lis = nil // the server owns it now
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
	}
	r.serving.Go(name, func(ctx context.Context) error {
		return serveUntil(ctx, func() error {
			if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}, func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		})
	})
	r.s.log.Info(name+" listening", "addr", l.Addr().String())
}

func pprofMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
