package api

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/ca"
	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
	"github.com/tier0-ca/tier0/internal/roles"
)

// lostAnswerJournal commits, then (when armed) cancels the client's call
// and waits until the server sees it gone: the answer to a committed
// request is lost, as when a client's deadline expires after the commit.
type lostAnswerJournal struct {
	*ha.Node
	cut atomic.Pointer[context.CancelFunc]
}

func (j *lostAnswerJournal) CommitKeyed(ctx context.Context, recs []*record.Record, keys []uint64) error {
	err := j.Node.CommitKeyed(ctx, recs, keys)
	if cut := j.cut.Swap(nil); cut != nil {
		(*cut)()
		<-ctx.Done()
	}
	return err
}

// TestMintRetryAfterLostAnswerReplays: an item committed whose answer the
// client never got, retried with the same idempotency key and CSR, gets
// the committed SVID (same serial) and the journal holds one record.
func TestMintRetryAfterLostAnswerReplays(t *testing.T) {
	var j *lostAnswerJournal
	f := newFixtureJournal(t, func(n *ha.Node) ca.Journal { j = &lostAnswerJournal{Node: n}; return j })
	f.grant(t, "a1", "spiffe://example.org/web")
	agentID, _ := roles.AgentID(testTD, "a1")
	c := f.clientAs(t, agentID)
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	csr, key, err := client.NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	req := &tier0v1.MintX509SVIDsRequest{Items: []*tier0v1.MintItem{{Csr: csr, IdempotencyKey: []byte("0123456789abcdef")}}}
	before := f.node.JournalStatus().Seq

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j.cut.Store(&cancel)
	if _, err := c.Agent().MintX509SVIDs(ctx, req); status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Fatalf("first call: %v, want Canceled (its answer lost)", err)
	}
	if got := f.node.JournalStatus().Seq; got != before+1 {
		t.Fatalf("journal advanced by %d after the lost answer, want 1 (committed)", got-before)
	}

	resp, err := c.Agent().MintX509SVIDs(context.Background(), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	res := resp.GetResults()[0]
	if res.GetError() != nil {
		t.Fatalf("retry item: %v", res.GetError())
	}
	svid, err := client.ParseChain(res.GetChain(), key, f.bundle)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.node.JournalStatus().Seq; got != before+1 {
		t.Fatalf("journal advanced by %d after the retry, want still 1", got-before)
	}
	var committed *record.Record
	for _, r := range f.node.Tail(before, 10) {
		committed = r
	}
	if committed == nil || svid.Certificates[0].SerialNumber.Text(16) != committed.Serial {
		t.Fatalf("retry got serial %s, committed %+v", svid.Certificates[0].SerialNumber.Text(16), committed)
	}

	// Without the key, the same CSR is a new request.
	req.Items[0].IdempotencyKey = nil
	if _, err := c.Agent().MintX509SVIDs(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := f.node.JournalStatus().Seq; got != before+2 {
		t.Fatalf("journal advanced by %d, want 2", got-before)
	}
	// A key of bad length is bad input.
	req.Items[0].IdempotencyKey = []byte("short")
	resp, err = c.Agent().MintX509SVIDs(context.Background(), req)
	if err != nil || codes.Code(resp.GetResults()[0].GetError().GetCode()) != codes.InvalidArgument {
		t.Fatalf("short key: %v %v, want item InvalidArgument", resp, err)
	}
}
