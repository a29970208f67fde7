package tlog

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tier0-ca/tier0/storage"
)

// TreeCache keeps the tree a long-running prover (the AuditLog service)
// built from the record store, so that a proof only reads the records
// appended since the last one: the first proof reads every record, the
// next ones take O(log n) (docs/BENCHMARKS.md, issue 15). It costs two
// hashes (64 bytes) a record in memory, as the leader's tree signer. Safe
// for concurrent use; the zero value is empty.
type TreeCache struct {
	mu sync.Mutex
	t  Tree
}

// with extends the cached tree to tc.Size from s, checks that its first
// tc.Size leaves hash to the signed root, and calls fn with the tree while
// holding the cache (fn must not keep it). A tree that does not match the
// signed root (the store was altered) is dropped, so the next call
// rebuilds it from the store.
func (c *TreeCache) with(ctx context.Context, s Ranger, tc storage.TreeCheckpoint, fn func(*Tree) error) error {
	cp, err := ParseCheckpoint(NoteText(tc.Note))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.Size() < tc.Size {
		if err := c.t.Extend(ctx, s, uint64(tc.Size), nil); err != nil {
			if errors.Is(err, ErrTree) {
				c.t = Tree{} // the store disagrees with the cached records: rebuild next time
			}
			return err
		}
	}
	root, err := c.t.Root(tc.Size)
	if err != nil {
		return err
	}
	if root != cp.Root {
		c.t = Tree{}
		return fmt.Errorf("%w: the store's records 1..%d hash to another root than the signed checkpoint: the store was altered", ErrTree, tc.Size)
	}
	return fn(&c.t)
}
