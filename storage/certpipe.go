package storage

import (
	"sync/atomic"

	"github.com/tier0-ca/tier0/ca/record"
)

// certPipeline checks batches of records' certificates
// (CertChecker.CheckBatch, itself on every core) on a goroutine of its own,
// in submission order, while VerifyAuditWith keeps reading and hashing the
// next records: reading never waits for the signature checks, and the
// cores never wait for the store. The first problem is the same as when
// checking batch after batch in place: batches are checked in seq order
// and the checker's state (issuers learned) advances in that order.
type certPipeline struct {
	in    chan []*record.Record
	done  chan struct{}
	found atomic.Bool // a problem was found: later batches need not be submitted
	bad   *problem    // the first problem; read after done
}

// pipelineDepth is how many batches may wait for the checker.
const pipelineDepth = 2

func startCertPipeline(c *CertChecker) *certPipeline {
	p := &certPipeline{in: make(chan []*record.Record, pipelineDepth), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for batch := range p.in {
			if p.bad != nil {
				continue // drain: the first problem is known
			}
			if seq, kind, detail := c.CheckBatch(batch); kind != "" {
				p.bad = &problem{seq, kind, detail}
				p.found.Store(true)
			}
		}
	}()
	return p
}

// submit hands batch to the checker (which owns it from now on); it blocks
// while pipelineDepth batches wait.
func (p *certPipeline) submit(batch []*record.Record) { p.in <- batch }

// wait checks what was submitted, ends the pipeline and returns the first
// problem (nil: none). Call it exactly once.
func (p *certPipeline) wait() *problem {
	close(p.in)
	<-p.done
	return p.bad
}
