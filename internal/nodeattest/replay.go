package nodeattest

import (
	"fmt"
	"time"
)

// Replay windows. An instance ID (aws_iid, gcp_iit) or pod UID (k8s_psat)
// that attested may not attest again for the attestor's replay_window
// (unless allow_reattestation): long enough that a copied identity
// document cannot be replayed while the agent it attested lives, bounded
// so that the replicated set of used keys does not grow forever (it holds
// the attestations of one window). Tokens are kept until they expire.
const (
	DefaultReplayWindow = 30 * 24 * time.Hour
	MaxReplayWindow     = 365 * 24 * time.Hour // ha keeps no key longer (ha.MaxReplayWindow)
)

// replayWindow checks a configured replay_window (0: the default).
func replayWindow(d time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return DefaultReplayWindow, nil
	case d < time.Minute || d > MaxReplayWindow:
		return 0, fmt.Errorf("config: replay_window %v: want 1m to %v", d, MaxReplayWindow)
	}
	return d, nil
}
