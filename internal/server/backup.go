package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tier0-ca/tier0/api"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/backupfile"
)

// backupNode is what the Backup service needs of the node (*ha.Node).
type backupNode interface {
	CAState() ha.CAState
	Backup(ctx context.Context) (*raft.SnapshotMeta, io.ReadCloser, error)
}

// backupSource serves the Backup service from this node's raft state.
type backupSource struct {
	node   backupNode
	nodeID string
	dir    string // data dir (absolute), where relative soft: key paths point
}

var _ api.BackupSource = (*backupSource)(nil)

func (b *backupSource) OpenBackup(ctx context.Context, includeDevKeys bool) (api.BackupInfo, io.ReadCloser, error) {
	var keys map[string][]byte
	if includeDevKeys {
		var err error
		if keys, err = devKeyFiles(b.dir, b.node.CAState().Roots); err != nil {
			return api.BackupInfo{}, nil, err
		}
	}
	meta, rc, err := b.node.Backup(ctx)
	if err != nil {
		return api.BackupInfo{}, nil, err
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		rc.Close()
		return api.BackupInfo{}, nil, fmt.Errorf("backup: raft meta: %w", err)
	}
	return api.BackupInfo{
		NodeID: b.nodeID, RaftIndex: meta.Index, RaftTerm: meta.Term, RaftMeta: raw,
		Size: meta.Size, CreatedAt: time.Now().UTC(), DevKeys: keys,
	}, rc, nil
}

// devKeyFiles reads the DEV-ONLY soft key file of every CA root. A root
// whose key is elsewhere (HSM, KMS, an absolute soft: path) cannot be put
// in a backup: api.ErrNoDevKey.
func devKeyFiles(dir string, roots []ha.CARoot) (map[string][]byte, error) {
	keys := map[string][]byte{}
	for _, r := range roots {
		rel, ok := backupfile.DevKeyPath(r.KeyURI)
		if !ok {
			return nil, fmt.Errorf("backup: root %s (%s): %w", r.ID, r.KeyID, api.ErrNoDevKey)
		}
		pem, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return nil, fmt.Errorf("backup: root %s: dev key: %w", r.ID, err)
		}
		keys[rel] = pem
	}
	return keys, nil
}
