package main

import (
	"crypto"
	"crypto/rand"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"

	"github.com/tier0-ca/tier0/api/client"
)

// attemptReuse is how long a request's key pair, CSR and idempotency key
// are reused by its retries. Past it the request starts over (the server
// replays only SVIDs with half their lifetime left anyway).
const attemptReuse = 5 * time.Minute

// attempt is one requested SVID: the key pair, its CSR and the request's
// idempotency key. Its retries send the same, so a retry of a request the
// server committed (the answer was lost, or came after our deadline) gets
// that SVID back instead of a second one.
type attempt struct {
	csr  []byte
	key  crypto.Signer
	idem []byte
	made time.Time
}

// attempts holds the unanswered request per SPIFFE ID.
type attempts struct {
	mu sync.Mutex
	m  map[string]attempt
}

// get returns id's unanswered request, or a new one.
func (a *attempts) get(id spiffeid.ID, now time.Time) (attempt, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at, ok := a.m[id.String()]; ok && now.Sub(at.made) < attemptReuse {
		return at, nil
	}
	csr, key, err := client.NewCSR(id)
	if err != nil {
		return attempt{}, err
	}
	idem := make([]byte, 16)
	if _, err := rand.Read(idem); err != nil {
		return attempt{}, err
	}
	at := attempt{csr: csr, key: key, idem: idem, made: now}
	if a.m == nil {
		a.m = map[string]attempt{}
	}
	a.m[id.String()] = at
	return at, nil
}

// answered forgets id's request: it got an answer that a retry would not
// change (an SVID, or a refusal other than Unavailable).
func (a *attempts) answered(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.m, id)
}

// unknownOutcome reports whether an item's error code leaves its fate
// unknown (it may have been committed), so its retry must reuse the request.
func unknownOutcome(code codes.Code) bool {
	return code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled
}
