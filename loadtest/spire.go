package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// SPIREVersion is the SPIRE release tier0 is compared with.
const SPIREVersion = "v1.13.3"

// InstallSPIRE builds spire-server SPIREVersion from the Go module proxy
// into dir/bin (once; a second call finds it there): in a scratch module
// under dir, `go get -tool github.com/spiffe/spire/cmd/spire-server@VERSION`
// then `go install`. It takes minutes the first time.
func InstallSPIRE(ctx context.Context, dir string, log io.Writer) (string, error) {
	bin := filepath.Join(dir, "bin", "spire-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	mod := filepath.Join(dir, "mod")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return "", err
	}
	steps := [][]string{
		{"go", "mod", "init", "tier0.local/spire-scratch"},
		{"go", "get", "-tool", "github.com/spiffe/spire/cmd/spire-server@" + SPIREVersion},
		{"go", "install", "github.com/spiffe/spire/cmd/spire-server"},
	}
	if _, err := os.Stat(filepath.Join(mod, "go.mod")); err == nil {
		steps = steps[1:]
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Dir = mod
		cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(dir, "bin"), "GOFLAGS=-mod=mod")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("loadtest: install spire-server: %v: %w", s, err)
		}
	}
	return bin, nil
}

// SPIREServer is a spire-server process on loopback: memory KeyManager,
// sqlite datastore, no UpstreamAuthority, admin API on a Unix socket, the
// agent API on TCPAddr, rate limits off (both servers are measured unthrottled).
type SPIREServer struct {
	cmd    *exec.Cmd
	log    bytes.Buffer
	exited chan struct{}
	Socket string
	// TCPAddr is the agent API (host:port on loopback).
	TCPAddr string
	conn    *grpc.ClientConn
}

const spireConf = `server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = %q
    trust_domain = "example.org"
    data_dir = %q
    log_level = "WARN"
    ca_key_type = "ec-p256"
    default_x509_svid_ttl = "1h"
    ratelimit {
        attestation = false
        signing = false
    }
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = %q
        }
    }
    KeyManager "memory" {
        plugin_data = {}
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
}
`

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("loadtest: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartSPIRE runs bin with a fresh config in dir and waits until its admin
// socket mints an SVID.
func StartSPIRE(ctx context.Context, bin, dir string, probeCSR []byte) (*SPIREServer, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &SPIREServer{Socket: filepath.Join(dir, "api.sock"), TCPAddr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan struct{})}
	conf := filepath.Join(dir, "server.conf")
	body := fmt.Sprintf(spireConf, port, s.Socket, data, filepath.Join(data, "datastore.sqlite3"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "run", "-config", conf)
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadtest: start spire-server: %w", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	conn, err := grpc.NewClient("unix://"+s.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", s.Socket)
		}))
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.conn = conn
	deadline := time.Now().Add(90 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.Client().MintX509SVID(cctx, &svidv1.MintX509SVIDRequest{Csr: probeCSR, Ttl: 3600})
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("loadtest: spire-server exited: %s", s.log.String())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Stop()
			return nil, errors.Join(fmt.Errorf("loadtest: spire-server not ready: %w", err), ctx.Err())
		}
		time.Sleep(200 * time.Millisecond) // polling a starting process
	}
}

// Client is the SVID API over the admin socket (the caller is local, which
// SPIRE's policy allows for MintX509SVID).
func (s *SPIREServer) Client() svidv1.SVIDClient { return svidv1.NewSVIDClient(s.conn) }

// PID is the server's process id.
func (s *SPIREServer) PID() int { return s.cmd.Process.Pid }

// Stop kills the process and closes the connection.
func (s *SPIREServer) Stop() {
	if s.conn != nil {
		s.conn.Close()
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
}
