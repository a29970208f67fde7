package operator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/backupfile"
	"github.com/tier0-ca/tier0/internal/serverinfo"
)

// ErrNoDevKey: a backup asked for the dev key and the server has no soft
// key to include (HSM/KMS roots).
var ErrNoDevKey = errors.New("backup: --include-dev-key: the CA has no DEV-ONLY soft key to include")

// errTryLeader: the node asked is not the leader (or has none); the backup
// is tried on the next address.
var errTryLeader = errors.New("backup: not taken on this node")

// BackupResult describes a backup file written.
type BackupResult struct {
	File     string              `json:"file"`
	Manifest backupfile.Manifest `json:"manifest"`
	Seconds  float64             `json:"seconds,omitempty"`
}

// BackupFromLeader tries each server address (o.Servers, or server.json's)
// in turn until one (the leader) takes the backup: a snapshot stream is
// not forwarded.
func BackupFromLeader(ctx context.Context, o Options, out string, devKey bool, pass []byte) (BackupResult, error) {
	addrs := o.Servers
	if len(addrs) == 0 {
		info, _ := serverinfo.Read(o.DataDir)
		addrs = info.Servers
	}
	if len(addrs) == 0 {
		addrs = []string{""} // let Dial explain
	}
	var errs []error
	for _, a := range addrs {
		oo := o
		if a != "" {
			oo.Servers = []string{a}
		}
		c, err := Dial(ctx, oo, "admin")
		if err != nil {
			return BackupResult{}, err
		}
		res, err := Backup(ctx, c, out, devKey, pass)
		c.Close()
		if !errors.Is(err, errTryLeader) {
			return res, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
	}
	return BackupResult{}, fmt.Errorf("backup: no server took the backup (pass the leader's address with --server): %w", errors.Join(errs...))
}

// Backup streams a backup from the node c talks to into out (with the dev
// soft keys sealed under pass when devKey).
func Backup(ctx context.Context, c *client.Client, out string, devKey bool, pass []byte) (BackupResult, error) {
	start := time.Now()
	stream, err := tier0v1.NewBackupClient(c).CreateBackup(ctx, &tier0v1.CreateBackupRequest{IncludeDevKeys: devKey})
	if err != nil {
		return BackupResult{}, Err(err)
	}
	first, err := stream.Recv()
	if devKey && status.Code(err) == codes.InvalidArgument {
		return BackupResult{}, fmt.Errorf("%w: %w", ErrNoDevKey, Err(err))
	}
	if status.Code(err) == codes.Unavailable {
		return BackupResult{}, fmt.Errorf("%w: %w", errTryLeader, Err(err))
	}
	if err != nil {
		return BackupResult{}, Err(err)
	}
	hdr := first.GetHeader()
	if hdr == nil || hdr.GetSize() < 0 {
		return BackupResult{}, errors.New("backup: the server sent no header")
	}
	var keys map[string][]byte
	if devKey {
		keys = map[string][]byte{}
		for _, k := range hdr.GetDevKeys() {
			keys[k.GetPath()] = k.GetPem()
		}
		if len(keys) == 0 {
			return BackupResult{}, ErrNoDevKey
		}
		defer func() {
			for _, k := range keys {
				clear(k)
			}
		}()
	}
	m, err := backupfile.Create(out, backupfile.Header{
		TrustDomain: hdr.GetTrustDomain(), NodeID: hdr.GetNodeId(), CreatedAt: time.Unix(0, hdr.GetCreatedAt()),
		RaftIndex: hdr.GetRaftIndex(), RaftTerm: hdr.GetRaftTerm(), RaftMeta: hdr.GetRaftMeta(), Size: hdr.GetSize(),
	}, &chunkReader{stream: stream}, keys, pass)
	if err != nil {
		return BackupResult{}, err
	}
	return BackupResult{File: out, Manifest: *m, Seconds: time.Since(start).Seconds()}, nil
}

// chunkReader reads the payload chunks of a backup stream.
type chunkReader struct {
	stream interface {
		Recv() (*tier0v1.BackupChunk, error)
	}
	buf []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		chunk, err := r.stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, Err(err)
		}
		r.buf = chunk.GetData()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}
