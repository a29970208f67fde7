package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// AddVoter adds (or re-addresses) a voting member. It runs on the leader,
// forwarded there from a follower.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return fmt.Errorf("ha: add voter: id and address are required: %w", ErrInvalid)
	}
	return n.membership(ctx, MembershipChange{Op: "add-voter", ID: id, Address: addr})
}

// RemoveServer removes a member.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if id == "" {
		return fmt.Errorf("ha: remove server: id is required: %w", ErrInvalid)
	}
	return n.membership(ctx, MembershipChange{Op: "remove", ID: id})
}

// TransferLeadership hands leadership to id ("" = raft picks the most
// up-to-date follower).
func (n *Node) TransferLeadership(ctx context.Context, id string) error {
	return n.membership(ctx, MembershipChange{Op: "transfer", ID: id})
}

// membership runs c on the leader and, for a join or a removal, then
// records its admin event (events.go): a raft configuration change is not
// an FSM command, so its event is the next entry, not the same one.
func (n *Node) membership(ctx context.Context, c MembershipChange) error {
	if err := n.membershipChange(ctx, c); err != nil {
		return err
	}
	action := map[string]string{"add-voter": "member.join", "remove": "member.remove"}[c.Op]
	if action == "" {
		return nil
	}
	// The configuration change may cost the leader its lease (a new voter
	// catching up): retry while leadership settles, bounded. An attempt
	// whose outcome was unknown may leave the event recorded twice.
	deadline := time.Now().Add(2 * n.cfg.ApplyTimeout)
	for {
		_, err := n.applyEvent(ctx, "membership "+c.Op, 0, nil, event{action: action, subject: "node:" + c.ID,
			detail: map[string]string{"id": c.ID, "address": c.Address}})
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ha: membership %s %s: done, but its event was not recorded: %w", c.Op, c.ID, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // leadership settling: poll
		}
	}
}

func (n *Node) membershipChange(ctx context.Context, c MembershipChange) error {
	if n.cfg.Forwarder == nil || n.isLeader() {
		return n.changeMembership(c)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("ha: membership: %w", err)
	}
	_, err = n.forward(ctx, "membership "+c.Op, ForwardMembership, payload, func() ([]byte, error) {
		return nil, n.changeMembership(c)
	})
	return err
}

// changeMembership runs c on this node's raft (the leader).
func (n *Node) changeMembership(c MembershipChange) error {
	var f raft.Future
	switch c.Op {
	case "add-voter":
		if c.ID == "" || c.Address == "" {
			return fmt.Errorf("ha: add voter: id and address are required: %w", ErrInvalid)
		}
		if cf := n.raft.GetConfiguration(); cf.Error() == nil {
			for _, s := range cf.Configuration().Servers {
				if string(s.ID) == c.ID && string(s.Address) == c.Address && s.Suffrage == raft.Voter {
					return nil // already a member: joining twice is fine
				}
			}
		}
		f = n.raft.AddVoter(raft.ServerID(c.ID), raft.ServerAddress(c.Address), 0, n.cfg.ApplyTimeout)
	case "remove":
		f = n.raft.RemoveServer(raft.ServerID(c.ID), 0, n.cfg.ApplyTimeout)
	case "transfer":
		if c.ID == "" {
			f = n.raft.LeadershipTransfer()
		} else {
			addr := ""
			if cf := n.raft.GetConfiguration(); cf.Error() == nil {
				for _, s := range cf.Configuration().Servers {
					if string(s.ID) == c.ID {
						addr = string(s.Address)
					}
				}
			}
			if addr == "" {
				return fmt.Errorf("ha: transfer leadership: %q is not a member: %w", c.ID, ErrNotFound)
			}
			f = n.raft.LeadershipTransferToServer(raft.ServerID(c.ID), raft.ServerAddress(addr))
		}
	default:
		return fmt.Errorf("ha: membership: unknown op %q: %w", c.Op, ErrInvalid)
	}
	if err := f.Error(); err != nil {
		return translate("membership "+c.Op, err)
	}
	n.log.Info("ha: membership changed", "op", c.Op, "id", c.ID, "address", c.Address)
	return nil
}
