package ha_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/tier0-ca/tier0/ca/record"
	"github.com/tier0-ca/tier0/ha"
)

func Example() {
	dir, err := os.MkdirTemp("", "tier0-ha-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	node, err := ha.New(ctx, ha.Config{
		NodeID: "node-1", DataDir: dir, Bootstrap: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		log.Fatal(err)
	}

	rec := &record.Record{Serial: "1f", SPIFFEID: "spiffe://example.org/web", NodeID: "node-1"}
	if err := node.Commit(ctx, []*record.Record{rec}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Seq, rec.Verify(record.Genesis) == nil)
	// Output: 1 true
}
