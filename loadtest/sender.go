package loadtest

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tier0-ca/tier0/api/client"
	tier0v1 "github.com/tier0-ca/tier0/api/gen/tier0/v1"
	"github.com/tier0-ca/tier0/internal/backoff"
)

// call is one MintX509SVIDs request of one agent, due at intended.
type call struct {
	agent    *Agent
	items    []int   // workload indexes
	notAfter []int64 // renewing_not_after per item (unix seconds), 0 = new
	intended time.Time
}

// result tells the scheduler which items of a call were renewed.
type result struct {
	call *call
	ok   []bool
	done time.Time
}

// sender performs calls: it retries refused attempts (ResourceExhausted
// after the server's retry-after hint, with jitter, waiting at the agent
// client's gate; Unavailable with a
// jittered backoff, which also fails over between addresses) until the
// call's deadline, records the outcome, and verifies a sample of the SVIDs.
type sender struct {
	rec            *Recorder
	bundle         *x509bundle.Bundle
	deadline       time.Duration // per call, from its intended time
	attemptTimeout time.Duration
	verifyRate     float64 // fraction of SVIDs checked with x509svid.Verify
	collectSerials bool
}

func (s *sender) do(ctx context.Context, c *call) result {
	s.rec.inflight.Add(1)
	defer s.rec.inflight.Add(-1)
	res := result{call: c, ok: make([]bool, len(c.items))}
	smp := sample{intended: c.intended.Sub(s.rec.start)}
	fail := map[string]int{}
	var serials []string
	// The CSRs are made (Agent.CSR) when the call is first sent and kept
	// for its retries, which must repeat them with their idempotency keys.
	items := make([]tier0v1.MintItem, len(c.items))
	keys := make([]byte, 16*len(c.items))
	_, _ = crand.Read(keys)
	req := &tier0v1.MintX509SVIDsRequest{Items: make([]*tier0v1.MintItem, len(c.items))}
	for i, w := range c.items {
		csr, err := c.agent.CSR(w)
		if err != nil {
			_ = err // cannot happen with a P-256 key and a valid ID
			fail["csr"] += len(c.items)
			smp.failed = int32(len(c.items))
			res.done = time.Now()
			smp.done = res.done.Sub(s.rec.start)
			s.rec.finish(smp, fail, nil)
			return res
		}
		// One idempotency key per item for every attempt of this call: a
		// retry after a timeout gets the SVID already committed for it.
		items[i].Csr, items[i].RenewingNotAfter, items[i].IdempotencyKey = csr, c.notAfter[i], keys[16*i:16*i+16:16*i+16]
		req.Items[i] = &items[i]
	}
	for attempt := 0; ; attempt++ {
		smp.attempts++
		var md metadata.MD
		actx, cancel := context.WithTimeout(ctx, s.attemptTimeout)
		resp, err := c.agent.Client.Agent().MintX509SVIDs(actx, req, grpc.Trailer(&md))
		cancel()
		if err == nil {
			serials = s.check(c, resp, &res, &smp, fail)
			break
		}
		kind := kindOf(err)
		s.rec.attemptFailed(kind)
		wait, gated, retry := retryWait(err, md, attempt)
		if !retry || ctx.Err() != nil || time.Since(c.intended)+wait > s.deadline {
			fail[kind] += len(c.items)
			smp.failed = int32(len(c.items))
			break
		}
		s.rec.retries.Add(1)
		if gated {
			continue // the agent's client holds every call until the hint has passed
		}
		if backoff.Sleep(ctx, wait) != nil {
			fail["canceled"] += len(c.items)
			smp.failed = int32(len(c.items))
			break
		}
	}
	res.done = time.Now()
	smp.done = res.done.Sub(s.rec.start)
	s.rec.finish(smp, fail, serials)
	return res
}

// check records the per-item results of a successful call and verifies a
// sample of the SVIDs; it returns their serials when collecting them.
func (s *sender) check(c *call, resp *tier0v1.MintX509SVIDsResponse, res *result, smp *sample, fail map[string]int) []string {
	var serials []string
	results := resp.GetResults()
	for i := range c.items {
		if i >= len(results) {
			fail["missing_result"]++
			smp.failed++
			continue
		}
		r := results[i]
		if e := r.GetError(); e != nil {
			fail["item_"+codes.Code(e.GetCode()).String()]++
			smp.failed++
			continue
		}
		res.ok[i] = true
		smp.ok++
		if s.verifyRate > 0 && (s.verifyRate >= 1 || rand.Float64() < s.verifyRate) {
			w, err := c.agent.workload(c.items[i])
			if err == nil {
				err = verifySVID(w, r.GetChain(), s.bundle)
			}
			s.rec.verifyResult(err)
		}
		if s.collectSerials && len(r.GetChain()) > 0 {
			if leaf, err := x509.ParseCertificate(r.GetChain()[0]); err == nil {
				serials = append(serials, leaf.SerialNumber.Text(16))
			}
		}
	}
	return serials
}

// verifySVID is the independent check of one issued chain: go-spiffe's
// x509svid.Verify against the bundle, plus what it does not check (the
// requested ID, the key, the digitalSignature key usage).
func verifySVID(w *Workload, chain [][]byte, bundle *x509bundle.Bundle) error {
	if len(chain) == 0 {
		return errors.New("empty chain")
	}
	certs := make([]*x509.Certificate, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%s: parse certificate %d: %w", w.ID, i, err)
		}
		certs[i] = c
	}
	id, _, err := x509svid.Verify(certs, bundle)
	if err != nil {
		return fmt.Errorf("%s: %w", w.ID, err)
	}
	if id != w.ID {
		return fmt.Errorf("%s: issued for %s", w.ID, id)
	}
	leaf := certs[0]
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return fmt.Errorf("%s: leaf lacks digitalSignature", w.ID)
	}
	got, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		return fmt.Errorf("%s: leaf key: %w", w.ID, err)
	}
	if !bytes.Equal(got, w.SPKI) {
		return fmt.Errorf("%s: leaf key differs from the CSR key", w.ID)
	}
	return nil
}

// kindOf names a failed attempt for the errors-by-kind table.
func kindOf(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	}
	return status.Code(err).String()
}

// retryWait says whether a failed attempt is retried and after how long.
// ResourceExhausted with the server's retry-after hint is gated: the
// agent's client.Client holds this and every other call of the agent until
// the hint has passed (+-20% jitter, so a refused storm does not come back
// in lockstep), so the sender does not wait itself. ResourceExhausted
// without a hint waits 100ms +-20%; Unavailable and attempt timeouts a
// jittered exponential backoff.
func retryWait(err error, md metadata.MD, attempt int) (wait time.Duration, gated, retry bool) {
	switch status.Code(err) {
	case codes.ResourceExhausted:
		if d, ok := client.RetryHint(err, md); ok {
			return d, true, true
		}
		return backoff.Jitter(100*time.Millisecond, 0.2), false, true
	case codes.Unavailable, codes.DeadlineExceeded:
		return backoff.Jitter(min(20*time.Millisecond<<min(attempt, 6), time.Second), 0.5), false, true
	}
	return 0, false, false
}
