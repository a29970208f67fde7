package record

import (
	"encoding/hex"
	"testing"
	"time"
)

// TestDecisionGolden pins the decision chain's encoding and hashes
// (docs/AUDIT.md "Authorization decisions" quotes these vectors): a change
// here breaks the verification of every stored decision.
func TestDecisionGolden(t *testing.T) {
	d := Decision{Seq: 1, At: time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC), NodeID: "node-1",
		Caller: "spiffe://example.org/tier0/agent/a", Requested: "spiffe://example.org/tier0/admin", Allowed: false,
		Code: "InvalidArgument", Reason: "reserved"}
	const canonical = "0300000000000000010006ba2d4475b580000000066e6f64652d31000000227370696666653a2f2f6578616d706c652e6f72672f74696572302f6167656e742f61000000207370696666653a2f2f6578616d706c652e6f72672f74696572302f61646d696e000000000f496e76616c6964417267756d656e74000000087265736572766564"
	if got := hex.EncodeToString(d.Canonical()); got != canonical {
		t.Fatalf("canonical\n got %s\nwant %s", got, canonical)
	}
	h := d.Hash(Genesis)
	if got := hex.EncodeToString(h); got != "b1eae960e6bf215cfc20fb1545c95d2109e961b981c6470df5f18a7cab53057d" {
		t.Fatalf("hash of decision 1 = %s", got)
	}
	d2 := d
	d2.Seq, d2.Allowed, d2.Code, d2.Reason = 2, true, "OK", "entry e1"
	if got := hex.EncodeToString(d2.Hash(h)); got != "4872731f7d75eac1ee0c1e51f6d2a312be4377dd3ed8b59440f4d059521766bd" {
		t.Fatalf("hash of decision 2 = %s", got)
	}
}
