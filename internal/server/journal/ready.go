package journal

// Ready is the node's "journal" readiness check: under FailClosed it fails
// while the journal is full (every mint would be refused), with the same
// reason Commit gives; with keep-issuing it always holds (the full journal
// is an alert, not a refusal).
func (b *Bounded) Ready() error { return b.refuseIfFull() }
