package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tier0-ca/tier0/ca"
)

// peerCreds are gRPC transport credentials for a Unix socket: no
// encryption (the kernel is the transport), but every connection is
// attested by the kernel's SO_PEERCRED record of the connecting process,
// and by the other attestors (Kubernetes) from its PID.
type peerCreds struct {
	procRoot string           // default /proc
	attestor workloadAttestor // nil: Unix attestation only
}

// workloadAttestor yields more selectors for a process (k8sattest).
type workloadAttestor interface {
	Attest(ctx context.Context, pid int32) ([]string, error)
}

// attestTimeout bounds the attestation of one connection (the Kubernetes
// attestor waits up to 10 s for a just-started container to be listed).
const attestTimeout = 30 * time.Second

// peerInfo is the credentials.AuthInfo of a Workload API connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	pid       int32
	workload  ca.Workload
	attestErr error // the other attestors failed: the call is refused
}

func (peerInfo) AuthType() string { return "unix-peercred" }

func (c peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("workload api: %T is not a unix connection", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("workload api: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("workload api: peer credentials: %w", err)
	}
	if credErr != nil {
		return nil, nil, fmt.Errorf("workload api: peer credentials: %w", credErr)
	}
	info := peerInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		pid:            cred.Pid,
		workload:       ca.Workload{UID: cred.Uid, GID: cred.Gid},
	}
	// The binary is read now, at connect time, while the process that
	// connected is alive (a pid is reused only after the caller exits, and
	// then this connection is dead). Unreadable (another user's process
	// without ptrace rights): no path, so path selectors do not match.
	procRoot := cmp.Or(c.procRoot, "/proc")
	if exe, err := os.Readlink(filepath.Join(procRoot, strconv.Itoa(int(cred.Pid)), "exe")); err == nil {
		info.workload.Path = exe
	}
	if c.attestor != nil {
		ctx, cancel := context.WithTimeout(context.Background(), attestTimeout)
		info.workload.Attested, info.attestErr = c.attestor.Attest(ctx, cred.Pid)
		cancel()
	}
	return conn, info, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workload api: peer credentials are server-only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (c peerCreds) Clone() credentials.TransportCredentials { return c }

func (peerCreds) OverrideServerName(string) error { return nil }

// callerOf returns the attested workload of a Workload API call.
func callerOf(ctx context.Context) (peerInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return peerInfo{}, false
	}
	info, ok := p.AuthInfo.(peerInfo)
	return info, ok
}
