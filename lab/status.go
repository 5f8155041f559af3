package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
)

// NodeStatus is one node as the lab sees it.
type NodeStatus struct {
	Name         string `json:"name"`
	ServerID     int64  `json:"server_id"`
	Powered      bool   `json:"powered"`
	Role         string `json:"role"`
	Galera       string `json:"galera"`
	StackRunning int    `json:"stack_running"`
	StackFailed  string `json:"stack_failed,omitempty"`
	Mounted      bool   `json:"volume_mounted"`
	HasAddress   bool   `json:"has_floating_ip"`
	Breaker      bool   `json:"breaker"`
	Maintenance  bool   `json:"maintenance"`
	BootError    string `json:"boot_error,omitempty"`
}

// Status is the whole lab.
type Status struct {
	FloatingIP      string       `json:"floating_ip"`
	FloatingIPOwner string       `json:"floating_ip_owner"`
	Volume          int64        `json:"volume"` // the shared Volume's id
	VolumeOwner     string       `json:"volume_owner"`
	Nodes           []NodeStatus `json:"nodes"`
}

// agentState is the part of the agent's status answer (failover.State) the lab shows.
type agentState struct {
	Role         string `json:"role"`
	GaleraOK     bool   `json:"galera_ok"`
	GaleraDetail string `json:"galera"`
	StackFailed  string `json:"stack_failed"`
	Verdict      bool   `json:"verdict"`
	Reason       string `json:"reason"`
	Breaker      bool   `json:"breaker"`
	Maintenance  bool   `json:"maintenance"`
	Takeovers    int    `json:"takeovers"`
}

// Status looks at every node.
func (l *Lab) Status(ctx context.Context) Status {
	st := l.Sim.State()
	out := Status{FloatingIP: FloatingIP, FloatingIPOwner: "-", Volume: l.volumeID, VolumeOwner: "-"}
	if n := l.nodeByID(st.FloatingIPs[0].Server); n != nil {
		out.FloatingIPOwner = n.Name
	}
	for _, v := range st.Volumes {
		if n := l.nodeByID(v.Server); v.ID == l.volumeID && n != nil {
			out.VolumeOwner = n.Name
		}
	}
	for _, n := range l.Nodes {
		ns := NodeStatus{Name: n.Name, ServerID: n.ID, Powered: n.Powered(), Role: "-", Galera: "-"}
		if err := n.BootErr(); err != nil {
			ns.BootError = err.Error()
		}
		if ns.Powered {
			if a, err := n.AgentState(); err == nil {
				ns.Role, ns.StackFailed = strings.ToUpper(a.Role), a.StackFailed
				ns.Galera = a.GaleraDetail
				ns.Breaker, ns.Maintenance = a.Breaker, a.Maintenance
			} else {
				ns.Role = "unreachable"
			}
			ns.StackRunning = n.StackRunning(ctx)
			ns.Mounted = n.Mounted()
			ns.HasAddress = n.HasAddress()
		}
		out.Nodes = append(out.Nodes, ns)
	}
	return out
}

// AgentState asks the node's agent over its socket.
func (n *Node) AgentState() (agentState, error) {
	var a agentState
	ans, err := check.Ask(filepath.Join(n.Dir, "agent.sock"), "status", 2*time.Second)
	if err != nil {
		return a, err
	}
	js, ok := strings.CutPrefix(ans, "ok ")
	if !ok {
		return a, errors.New(ans)
	}
	err = json.Unmarshal([]byte(js), &a)
	return a, err
}

// HasAddress reports whether the Floating IP is on the node's public interface.
func (n *Node) HasAddress() bool {
	out, err := exec.Command("ip", "-n", n.NS.Name, "-4", "-o", "addr", "show", "dev", "eth0").Output()
	return err == nil && strings.Contains(string(out), " "+FloatingIP+"/")
}

// Print writes the status as a table.
func (s Status) Print(w io.Writer) {
	fmt.Fprintf(w, "Floating IP %s → %s    Volume %d → %s\n", s.FloatingIP, s.FloatingIPOwner, s.Volume, s.VolumeOwner)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPOWER\tROLE\tGALERA\tSTACK\tVOLUME\tFLOATING IP\tNOTES")
	for _, n := range s.Nodes {
		power, stack, vol, fip := "off", "-", "-", "-"
		if n.Powered {
			power = "on"
			stack = fmt.Sprintf("%d/18 running", n.StackRunning)
			if n.StackFailed != "" && n.StackRunning > 0 {
				stack += " (" + n.StackFailed + ")"
			}
			if n.Mounted {
				vol = "mounted"
			}
			if n.HasAddress {
				fip = "on eth0"
			}
		}
		var notes []string
		if n.Breaker {
			notes = append(notes, "breaker tripped")
		}
		if n.Maintenance {
			notes = append(notes, "maintenance")
		}
		if n.BootError != "" {
			notes = append(notes, "power-on failed: "+n.BootError)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, power, n.Role, n.Galera, stack, vol, fip, strings.Join(notes, ", "))
	}
	tw.Flush()
}

// Master returns the node that holds everything (Floating IP routed to it and on its interface, Volume attached
// and mounted, stack running) while no other node holds any of it; "" otherwise, with why.
func (l *Lab) Master(ctx context.Context) (string, string) {
	s := l.Status(ctx)
	var m string
	var why []string
	for _, n := range s.Nodes {
		holds := n.HasAddress || n.Mounted || n.StackRunning > 0
		if n.Name == s.FloatingIPOwner && n.Name == s.VolumeOwner && n.HasAddress && n.Mounted && n.StackRunning == 18 && n.Role == "MASTER" {
			m = n.Name
			continue
		}
		if holds {
			why = append(why, fmt.Sprintf("%s holds address=%v mount=%v stack=%d", n.Name, n.HasAddress, n.Mounted, n.StackRunning))
		}
	}
	if m == "" {
		why = append(why, fmt.Sprintf("floating ip → %s, volume → %s", s.FloatingIPOwner, s.VolumeOwner))
		return "", strings.Join(why, "; ")
	}
	if len(why) > 0 {
		return "", strings.Join(why, "; ")
	}
	return m, ""
}

// WaitSettled waits until exactly one node is MASTER with everything and every other powered node is a BACKUP
// with Galera Primary and Synced: the cluster can lose its master now.
func (l *Lab) WaitSettled(ctx context.Context, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		m, w := l.Master(ctx)
		why = w
		if m != "" {
			ok := true
			for _, n := range l.Nodes {
				if err := n.BootErr(); err != nil {
					ok, why = false, fmt.Sprintf("%s did not power on: %v", n.Name, err)
					break
				}
				if n.Name == m || !n.Powered() {
					continue
				}
				a, err := n.AgentState()
				if err != nil || a.Role != "backup" || !a.GaleraOK {
					ok = false
					why = fmt.Sprintf("%s is %s (%s)", n.Name, a.Role, a.GaleraDetail)
					if err != nil {
						why = fmt.Sprintf("%s: %v", n.Name, err)
					}
					break
				}
			}
			if ok {
				return m, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("lab: not settled within %s: %s", within, why)
}

// WaitMaster waits until exactly one node is MASTER with everything (and, with not, it is another node).
func (l *Lab) WaitMaster(ctx context.Context, within time.Duration, not string) (string, error) {
	deadline := time.Now().Add(within)
	var why string
	for time.Now().Before(deadline) {
		m, w := l.Master(ctx)
		if m != "" && m != not {
			return m, nil
		}
		why = w
		if m == not && m != "" {
			why = m + " is still MASTER"
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("lab: no single MASTER within %s: %s", within, why)
}

// Partition cuts the private network between two groups of nodes (blackhole routes on both sides); the API
// stays reachable for everyone, as at Hetzner.
func (l *Lab) Partition(a, b []string) error {
	var errs []error
	for _, x := range a {
		for _, y := range b {
			nx, ny := l.Node(x), l.Node(y)
			if nx == nil || ny == nil {
				return fmt.Errorf("lab: partition: unknown node in %v / %v", a, b)
			}
			errs = append(errs, nx.NS.IP("route", "replace", "blackhole", ny.PrivIP+"/32"),
				ny.NS.IP("route", "replace", "blackhole", nx.PrivIP+"/32"))
		}
	}
	return errors.Join(errs...)
}

// Heal removes every partition.
func (l *Lab) Heal() error {
	for _, n := range l.Nodes {
		for _, m := range l.Nodes {
			if m != n {
				n.NS.IP("route", "del", "blackhole", m.PrivIP+"/32")
			}
		}
	}
	return nil
}

// Maintenance switches maintenance mode on or off through one powered node's agent, which passes it to every
// peer; it returns the agent's answer.
func (l *Lab) Maintenance(on bool) (string, error) {
	verb := map[bool]string{true: "maintenance on", false: "maintenance off"}[on]
	var errs []error
	for _, n := range l.Nodes {
		if !n.Powered() {
			continue
		}
		ans, err := check.Ask(filepath.Join(n.Dir, "agent.sock"), verb, 30*time.Second)
		if err == nil && strings.HasPrefix(ans, "ok") {
			return n.Name + ": " + ans, nil
		}
		errs = append(errs, fmt.Errorf("%s: %q %w", n.Name, ans, err))
	}
	return "", fmt.Errorf("lab: %s: no agent took it: %w", verb, errors.Join(errs...))
}
