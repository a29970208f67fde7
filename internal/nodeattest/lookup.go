package nodeattest

import (
	"errors"
	"fmt"
	"time"
)

// ErrLookup: an attestor configured to read selectors from its
// platform's API (EC2/IAM, GCE Compute, the Kubernetes API) could not. The
// attestation is refused rather than granted with fewer selectors (an
// entry keyed on a missing tag must not silently stop matching, nor a
// deny-by-absence turn into an allow). It is wrapped with ErrUnavailable
// when the API did not answer (the agent retries) and with ErrDenied when
// it answered that the instance or pod does not exist; api records both
// in the decision log.
var ErrLookup = errors.New("nodeattest: platform API lookup failed")

// lookupTimeout bounds one attestation's platform API calls.
const lookupTimeout = 10 * time.Second

// lookupUnavailable is a platform API that did not answer.
func lookupUnavailable(format string, a ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrUnavailable, ErrLookup, fmt.Sprintf(format, a...))
}

// lookupDenied is a platform API that answered no (no such instance).
func lookupDenied(format string, a ...any) error {
	return fmt.Errorf("%w: %w: %s", ErrDenied, ErrLookup, fmt.Sprintf(format, a...))
}
