package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/tier0-ca/tier0/api/client"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/atomicfile"
	"github.com/tier0-ca/tier0/internal/roles"
	"github.com/tier0-ca/tier0/internal/server/keys"
	"github.com/tier0-ca/tier0/storage"
)

// A cluster stopped for longer than half a node SVID's life (1 h) would
// not re-form: node SVIDs are renewed by the cluster, and after a long
// full stop every member's has expired, so no member accepts another
// (raft and the peer services use strict mTLS). A restarting member whose
// node SVID has expired or is past half its life therefore re-issues it
// from the CA root key before it joins raft (keys.IssueOffline; every
// member opens the root key named in raft state, found in its own log:
// ha.Node.LocalCAState). The SVID's record cannot be committed without a
// leader: it is kept in DATA/node/pending-records.json (written and
// fsynced before the SVID is used) and committed to the journal as soon
// as the node can issue (startCreds), then the file is removed. See
// docs/OPERATIONS.md "Restarting after a long stop".

// nodeSVIDTTL is the lifetime of node SVIDs (renewed at half life).
const nodeSVIDTTL = time.Hour

func pendingRecordsFile(dir string) string {
	return filepath.Join(nodeCredDir(dir), "pending-records.json")
}

// needsRenewal reports whether a node SVID is missing or past half its
// life at now.
func needsRenewal(svid *x509svid.SVID, now time.Time) bool {
	if svid == nil || len(svid.Certificates) == 0 {
		return true
	}
	c := svid.Certificates[0]
	return !now.Before(c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2))
}

// renewOffline re-issues this member's node SVID from the CA root key
// when the one it holds has expired (or was never stored) or is past half
// its life. A first start (bootstrapping or joining) gets its SVID the
// normal way and is left alone. It fails only when the node holds no
// valid SVID afterwards: no member would accept it.
func (c *clusterNode) renewOffline(ctx context.Context, node *ha.Node, timeout time.Duration) error {
	if c.joining || c.firstBoot {
		return nil
	}
	cur, _ := c.svid.GetX509SVID() // nil when the stored one had expired
	if !needsRenewal(cur, time.Now()) {
		return nil
	}
	reason := "it expired or is missing"
	if cur != nil {
		reason = "it is past half its life"
	}
	err := c.issueOffline(ctx, node, timeout)
	switch {
	case err == nil:
		return nil
	case cur != nil:
		c.log.Warn("cluster: could not re-issue the node SVID from the CA key; using the stored one until the cluster renews it",
			"not_after", cur.Certificates[0].NotAfter, "err", err)
		return nil
	}
	return fmt.Errorf("cluster: this node's SVID cannot be used (%s) and it could not re-issue one from the CA root key: %w; "+
		"the other members refuse it (raft and peer traffic is mTLS with node SVIDs). Give this node access to the CA root key "+
		"(the key URI in `tier0 ca list`; a soft: key is DATA/ca/root.key) and restart it, or bring it back with a new join token: "+
		"on a member `tier0 token create --node %s`, delete %s and start it with --join and --join-token",
		reason, err, c.nodeID, joinedMarker(c.dir))
}

func (c *clusterNode) issueOffline(ctx context.Context, node *ha.Node, timeout time.Duration) error {
	st, err := node.LocalCAState()
	if err != nil {
		return err
	}
	root, ok := st.Active()
	if !ok {
		return errors.New("no active CA root in this node's raft data")
	}
	id, err := roles.NodeID(c.td, c.nodeID)
	if err != nil {
		return err
	}
	svid, rec, err := keys.IssueOffline(ctx, keys.OfflineConfig{TrustDomain: c.td, DataDir: c.dir, Root: root, ID: id,
		TTL: nodeSVIDTTL, NodeID: c.nodeID, Timeout: timeout})
	if err != nil {
		return err
	}
	// The record first: no SVID is used before its record is durable.
	if err := addPendingRecord(c.dir, rec); err != nil {
		return err
	}
	if err := client.WriteSVIDFiles(nodeCredDir(c.dir), svid, nil); err != nil {
		return fmt.Errorf("cluster: store node SVID: %w", err)
	}
	c.svid.Set(svid)
	c.log.Warn("cluster: node SVID re-issued offline from the CA root key (its record is committed once there is a leader)",
		"root", root.ID, "serial", rec.Serial, "not_after", rec.NotAfter, "pending", pendingRecordsFile(c.dir))
	return nil
}

// pendingRecords is DATA/node/pending-records.json: the records of node
// SVIDs issued offline and not yet known to be committed. Attempted is
// set (fsynced) just before a commit: a node that stopped between the
// commit and the file's removal finds it set and commits only the records
// that are neither in its journal nor in the store, since a serial twice
// in the journal would stop the export (the store refuses it).
type pendingRecords struct {
	Attempted bool             `json:"attempted,omitempty"`
	Records   []*record.Record `json:"records"`
}

// readPendingRecords reads the pending records (none when the file does
// not exist).
func readPendingRecords(dir string) (pendingRecords, error) {
	var p pendingRecords
	raw, err := os.ReadFile(pendingRecordsFile(dir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("cluster: pending records: %w", err)
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, fmt.Errorf("cluster: pending records %s: %w", pendingRecordsFile(dir), err)
	}
	return p, nil
}

func writePendingRecords(dir string, p pendingRecords) error {
	raw, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("cluster: pending records: %w", err)
	}
	if err := os.MkdirAll(nodeCredDir(dir), 0o700); err != nil {
		return fmt.Errorf("cluster: pending records: %w", err)
	}
	if err := atomicfile.Write(pendingRecordsFile(dir), raw, 0o600); err != nil {
		return fmt.Errorf("cluster: pending records: %w", err)
	}
	return nil
}

func addPendingRecord(dir string, rec *record.Record) error {
	p, err := readPendingRecords(dir)
	if err != nil {
		return err
	}
	p.Records = append(p.Records, rec)
	return writePendingRecords(dir, p)
}

// commitPendingRecords commits the records of node SVIDs issued offline
// (at an earlier start, or at this one before raft had a leader), then
// removes the file.
func (r *run) commitPendingRecords() error {
	dir := r.s.cfg.DataDir
	p, err := readPendingRecords(dir)
	if err != nil || len(p.Records) == 0 {
		return err
	}
	recs := p.Records
	if p.Attempted {
		if recs, err = r.notCommitted(recs); err != nil {
			return err
		}
	}
	for _, rec := range recs {
		rec.Seq, rec.CommittedAt, rec.PrevHash, rec.Hash = 0, time.Time{}, nil, nil
	}
	if len(recs) > 0 {
		if err := writePendingRecords(dir, pendingRecords{Attempted: true, Records: recs}); err != nil {
			return err
		}
		if err := r.journal.Commit(r.ctx, recs); err != nil {
			return fmt.Errorf("cluster: commit the records of node SVIDs issued offline: %w", err)
		}
	}
	if err := os.Remove(pendingRecordsFile(dir)); err != nil {
		return fmt.Errorf("cluster: pending records: %w", err)
	}
	for _, rec := range recs {
		r.s.log.Info("cluster: record of a node SVID issued offline committed", "serial", rec.Serial, "seq", rec.Seq)
	}
	return nil
}

// notCommitted returns the records whose serial is neither in the
// journal's unexported tail nor in the record store.
func (r *run) notCommitted(recs []*record.Record) ([]*record.Record, error) {
	have := map[string]bool{}
	for _, t := range r.node.Tail(0, math.MaxInt) {
		have[t.Serial] = true
	}
	var out []*record.Record
	for _, rec := range recs {
		if have[rec.Serial] {
			continue
		}
		found, err := r.store.Query(r.ctx, storage.Filter{Serial: rec.Serial, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("cluster: a commit of the node SVID records issued offline (%s) was interrupted, "+
				"and the record store cannot tell whether it went through: %w; start the node again once the store answers", pendingRecordsFile(r.s.cfg.DataDir), err)
		}
		if len(found) == 0 {
			out = append(out, rec)
		}
	}
	return out, nil
}
