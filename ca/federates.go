package ca

import (
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxFederatesWith is the most federated trust domains one entry may name.
const MaxFederatesWith = 16

// NormalizeFederatesWith validates the federated trust domains of an entry
// (names like "partner.example", or "spiffe://partner.example") and returns
// their names sorted without duplicates. Our own trust domain is refused:
// its bundle is always sent. Errors wrap ErrInvalidID.
func NormalizeFederatesWith(own spiffeid.TrustDomain, tds []string) ([]string, error) {
	if len(tds) > MaxFederatesWith {
		return nil, fmt.Errorf("ca: %d federated trust domains, at most %d: %w", len(tds), MaxFederatesWith, ErrInvalidID)
	}
	out := make([]string, 0, len(tds))
	for _, s := range tds {
		td, err := ParseTrustDomain(s)
		if err != nil {
			return nil, err
		}
		if td == own {
			return nil, fmt.Errorf("ca: federates with %s: that is our own trust domain, whose bundle every workload gets: %w", td.Name(), ErrInvalidID)
		}
		out = append(out, td.Name())
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
