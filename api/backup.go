package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ha"
)

// BackupSource takes consistent snapshots of the replicated state
// (implemented by internal/server over ha.Node).
type BackupSource interface {
	// OpenBackup takes a snapshot; the caller closes the reader, which
	// yields exactly info.Size bytes.
	OpenBackup(ctx context.Context, includeDevKeys bool) (BackupInfo, io.ReadCloser, error)
}

// BackupInfo describes a snapshot opened by a BackupSource.
type BackupInfo struct {
	NodeID              string
	RaftIndex, RaftTerm uint64
	RaftMeta            []byte // JSON raft.SnapshotMeta
	Size                int64
	CreatedAt           time.Time
	DevKeys             map[string][]byte // relative path -> PEM; only when asked for
}

// ErrNoDevKey marks a backup that asked for the dev soft keys when a CA
// root's key is not a soft key file in the data dir. Maps to InvalidArgument.
var ErrNoDevKey = fmt.Errorf("%w: a CA root key is not a DEV-ONLY soft key file", errBadInput)

const backupChunk = 1 << 20

type backupService struct {
	tier0v1.UnimplementedBackupServer
	s *Server
}

func (b *backupService) CreateBackup(req *tier0v1.CreateBackupRequest, stream grpc.ServerStreamingServer[tier0v1.BackupChunk]) error {
	const method = "CreateBackup"
	ctx := stream.Context()
	src := b.s.cfg.Backup
	if src == nil {
		return b.s.toStatus(ctx, method, fmt.Errorf("api: backup: not configured: %w", ha.ErrUnavailable))
	}
	info, rc, err := src.OpenBackup(ctx, req.GetIncludeDevKeys())
	if err != nil {
		return b.s.toStatus(ctx, method, err)
	}
	defer rc.Close()
	b.s.log.InfoContext(ctx, "backup started", "caller", callerFrom(ctx).id.String(), "raft_index", info.RaftIndex,
		"bytes", info.Size, "dev_keys", len(info.DevKeys))
	hdr := &tier0v1.BackupHeader{
		TrustDomain: b.s.cfg.TrustDomain.Name(), NodeId: info.NodeID, RaftIndex: info.RaftIndex, RaftTerm: info.RaftTerm,
		RaftMeta: info.RaftMeta, Size: info.Size, CreatedAt: info.CreatedAt.UnixNano(),
	}
	for p, pem := range info.DevKeys {
		hdr.DevKeys = append(hdr.DevKeys, &tier0v1.DevKey{Path: p, Pem: pem})
	}
	if err := stream.Send(&tier0v1.BackupChunk{Header: hdr}); err != nil {
		return err
	}
	buf := make([]byte, backupChunk)
	var sent int64
	for {
		n, err := io.ReadFull(rc, buf)
		if n > 0 {
			if err := stream.Send(&tier0v1.BackupChunk{Data: buf[:n]}); err != nil {
				return err
			}
			sent += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return b.s.toStatus(ctx, method, fmt.Errorf("api: backup: read snapshot: %w", err))
		}
	}
	if sent != info.Size {
		return b.s.toStatus(ctx, method, fmt.Errorf("api: backup: snapshot is %d bytes, sent %d", info.Size, sent))
	}
	b.s.log.InfoContext(ctx, "backup sent", "bytes", sent)
	return nil
}

// streamAuth authorizes streaming calls exactly like unaryAuth (same
// methodRoles table, default deny).
func (s *Server) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, note := withNote(ss.Context(), nil)
	actx, err := s.authn.authorize(ctx, info.FullMethod)
	if err != nil {
		s.metrics.denied.WithLabelValues(info.FullMethod).Inc()
		s.log.InfoContext(ctx, "request refused", "method", info.FullMethod, "err", err)
		s.recordCall(ctx, info.FullMethod, note, err)
		return err
	}
	err = handler(srv, &authedStream{ServerStream: &recordingStream{ServerStream: ss, n: note}, ctx: actx})
	s.recordCall(actx, info.FullMethod, note, err) // decisions.go
	return err
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }
