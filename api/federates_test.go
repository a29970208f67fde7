package api

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/roles"
)

// TestEntryFederatesWith: an entry's federated trust domains are
// normalized, stored, listed to operators and returned to its agent; bad
// ones are InvalidArgument and create nothing.
func TestEntryFederatesWith(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	admin := f.clientAs(t, roles.AdminID(testTD)).Admin()
	resp, err := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{
		Agent: "a1", SpiffeId: "spiffe://example.org/web", Selectors: []string{"unix:uid:1"},
		FederatesWith: []string{"spiffe://partner.example", "other.example", "partner.example"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"other.example", "partner.example"}
	if got := resp.GetEntry().GetFederatesWith(); !slices.Equal(got, want) {
		t.Fatalf("created federates_with %v, want %v", got, want)
	}
	if _, err := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: "spiffe://example.org/db"}); err != nil {
		t.Fatal(err)
	}
	agentID, _ := roles.AgentID(testTD, "a1")
	list, err := f.clientAs(t, agentID).Agent().ListAuthorizedEntries(ctx, &tier0v1.ListAuthorizedEntriesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range list.GetEntries() {
		got[e.GetSpiffeId()] = e.GetFederatesWith()
	}
	if len(got) != 2 || !slices.Equal(got["spiffe://example.org/web"], want) || got["spiffe://example.org/db"] != nil {
		t.Fatalf("agent sees %v", got)
	}
	for _, tc := range []struct{ td, msg string }{
		{"example.org", "invalid argument: federates with: ca: federates with example.org: that is our own trust domain, whose bundle every workload gets: invalid spiffe id"},
		{"Not A TD", `invalid argument: federates with: ca: trust domain "Not A TD": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores: invalid spiffe id`},
	} {
		_, err := admin.CreateEntry(ctx, &tier0v1.CreateEntryRequest{Agent: "a1", SpiffeId: "spiffe://example.org/x", FederatesWith: []string{tc.td}})
		if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != tc.msg {
			t.Errorf("%q: %v, want InvalidArgument %q", tc.td, err, tc.msg)
		}
	}
	if n := len(f.node.EntriesFor("a1")); n != 2 {
		t.Fatalf("%d entries after refused creates, want 2", n)
	}
}
