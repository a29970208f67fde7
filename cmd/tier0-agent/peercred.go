package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/tier0-ca/tier0/ca"
)

// peerCreds are gRPC transport credentials for a Unix socket: no
// encryption (the kernel is the transport), but every connection is
// attested by the kernel's SO_PEERCRED record of the connecting process.
type peerCreds struct{}

// peerInfo is the credentials.AuthInfo of a Workload API connection.
type peerInfo struct {
	credentials.CommonAuthInfo
	pid      int32
	workload ca.Workload
}

func (peerInfo) AuthType() string { return "unix-peercred" }

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
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
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(int(cred.Pid)) + "/exe"); err == nil {
		info.workload.Path = exe
	}
	return conn, info, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("workload api: peer credentials are server-only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "unix-peercred"}
}

func (p peerCreds) Clone() credentials.TransportCredentials { return p }

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
