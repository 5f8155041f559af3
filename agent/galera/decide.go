package galera

import (
	"fmt"
	"sort"
	"strings"
)

// Report is what one node says about itself during a start: whether it answered at all, whether it runs in a
// Primary component now, and its position.
type Report struct {
	Node     string   `json:"node"`
	Answered bool     `json:"answered"`
	Primary  bool     `json:"primary"`
	Pos      Position `json:"position"`
	// Joining: mariadbd runs there but is not Primary and Synced yet (a state transfer, or a start): a node that
	// would join after it waits, so that joiners go one at a time (concurrent joiners broke an IST in a
	// five-node lab: "IST didn't contain all write sets").
	Joining bool `json:"joining,omitempty"`
	// State is the live member's wsrep_local_state_comment (Synced, Donor/Desynced, Joiner…), for the reasons
	// the others log; empty when mariadbd is not running or does not answer.
	State string `json:"state,omitempty"`
}

// DonorState is the local state of a member that sends a state transfer: still in the Primary component, but
// not Synced until the transfer ends.
const DonorState = "Donor/Desynced"

// JoinedState is the local state between a state transfer and Synced: a joiner applying what it missed, or a
// donor catching up.
const JoinedState = "Joined"

// Action is what a node does at start.
type Action string

// Decisions.
const (
	Join      Action = "join"      // a Primary component exists, or the winner is another node: join it
	Bootstrap Action = "bootstrap" // start a new Primary component here
	Wait      Action = "wait"      // in doubt: wait and alert
)

// Decision is an Action with its reason, and the position to bootstrap from.
type Decision struct {
	Action Action
	Reason string
	From   Position // Bootstrap: --wsrep_start_position
	Winner string
	// Waits: a Join that cannot start before the winner bootstraps. A wait that lasts alerts like Wait: the winner
	// may never come (a survivor left out of a Primary component, before Manager.Watch).
	Waits bool
}

// FirstBoot decides the start of a node without a cluster history of its own: the node configured as bootstrap
// starts a new cluster only when every peer answered, none runs a Primary component and none has a history (a
// cluster uuid of its own); the others join. A bootstrap node whose peers have a history has a new datadir in an
// existing cluster (a rebuilt or replaced server, while the others are down and recover): a new cluster started
// there would be empty, and a second Primary component beside the one that the peers' recovery bootstraps. It
// waits instead, and joins once a Primary component runs; the manager alerts while it waits.
func FirstBoot(self string, isBootstrap bool, peers []Report) Decision {
	for _, p := range peers {
		if p.Answered && p.Primary {
			return Decision{Action: Join, Reason: p.Node + " runs a Primary component"}
		}
	}
	if !isBootstrap {
		return Decision{Action: Join, Reason: "not the bootstrap node: joining"}
	}
	if missing := unanswered(peers); len(missing) > 0 {
		return Decision{Action: Wait, Reason: "no answer from " + strings.Join(missing, ", ") + ": a cluster may run there"}
	}
	var history []string
	for _, p := range peers {
		if p.Pos.HasHistory() {
			history = append(history, p.Node+"="+p.Pos.String())
		}
	}
	if len(history) > 0 {
		return Decision{Action: Wait, Reason: "this datadir is new, but peers have a cluster's history (" + strings.Join(history, ", ") +
			"): no new cluster starts here; waiting to join the Primary component that their recovery starts"}
	}
	return Decision{Action: Bootstrap, Reason: "first boot: no peer runs a Primary component or has a history", Winner: self}
}

// Recover decides a start after the whole cluster went down. A running Primary component is joined. Otherwise
// every peer must have answered with its position (in doubt, wait); the winner is the node with
// safe_to_bootstrap, else the highest seqno; an unknown position (zero uuid or seqno -1) never wins, and
// positions of different cluster uuids are a fork that no automatic choice may settle. Of equal positions a live
// member (one that survived, out of a Primary component) wins, since it needs no restart (Manager.Watch); other
// ties go to the first name, so that all nodes agree.
func Recover(self Report, peers []Report) Decision {
	for _, p := range peers {
		if p.Answered && p.Primary {
			return Decision{Action: Join, Reason: p.Node + " runs a Primary component"}
		}
	}
	if missing := unanswered(peers); len(missing) > 0 {
		return Decision{Action: Wait, Reason: "no answer from " + strings.Join(missing, ", ") + ": bootstrap only when every node has answered"}
	}
	all := append([]Report{self}, peers...)
	var cands []Report
	uuids := map[string]bool{}
	for _, r := range all {
		if r.Pos.Known() {
			cands = append(cands, r)
			uuids[r.Pos.UUID] = true
		}
	}
	if len(cands) == 0 {
		return Decision{Action: Wait, Reason: "no node knows its position"}
	}
	if len(uuids) > 1 {
		var list []string
		for _, r := range cands {
			list = append(list, r.Node+"="+r.Pos.String())
		}
		return Decision{Action: Wait, Reason: "positions of different cluster uuids (a fork): " + strings.Join(list, ", ")}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Pos.SafeToBootstrap != b.Pos.SafeToBootstrap {
			return a.Pos.SafeToBootstrap
		}
		if a.Pos.Seqno != b.Pos.Seqno {
			return a.Pos.Seqno > b.Pos.Seqno
		}
		if a.Joining != b.Joining {
			return a.Joining
		}
		return a.Node < b.Node
	})
	w := cands[0]
	why := fmt.Sprintf("highest seqno %d", w.Pos.Seqno)
	if w.Pos.SafeToBootstrap {
		why = "safe_to_bootstrap"
	}
	if w.Node != self.Node {
		return Decision{Action: Join, Reason: fmt.Sprintf("%s wins (%s): waiting to join it", w.Node, why), Winner: w.Node, Waits: true}
	}
	return Decision{Action: Bootstrap, Reason: "this node wins (" + why + ")", From: w.Pos, Winner: w.Node}
}

// unanswered lists the peers that did not answer, or answered without a position (not computed yet, or its
// server not answering): either way nothing is known of their history.
func unanswered(peers []Report) []string {
	var out []string
	for _, p := range peers {
		if !p.Answered || p.Pos.UUID == "" {
			out = append(out, p.Node)
		}
	}
	return out
}

// forced is the decision for an operator's forced bootstrap (Manager.ForceBootstrap): a running Primary component
// is joined all the same, a node without a position waits, and otherwise this node bootstraps from its position.
func forced(self string, pos Position, peers []Report) Decision {
	for _, p := range peers {
		if p.Answered && p.Primary {
			return Decision{Action: Join, Reason: "a bootstrap was forced, but " + p.Node + " runs a Primary component: joining it"}
		}
	}
	if !pos.Known() {
		return Decision{Action: Wait, Reason: "a bootstrap was forced, but this datadir has no position: it has no data to start a cluster from"}
	}
	return Decision{Action: Bootstrap, Winner: self, From: pos,
		Reason: "forced by the operator (mailcow-ha galera force-bootstrap): a new Primary component from this node's position " + pos.String()}
}
