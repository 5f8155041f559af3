package lab

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// The supervisor (`mailcow-ha lab supervise`) owns the lab and answers the other lab commands on a unix socket in
// the lab directory, one JSON request per connection.

// Command names a request to the supervisor.
type Command string

// The supervisor's commands (mailcow-ha lab's, less those that need no supervisor).
const (
	CmdStatus      Command = "status"
	CmdWaitMaster  Command = "wait-master"
	CmdKill        Command = "kill"
	CmdStart       Command = "start"
	CmdPartition   Command = "partition"
	CmdHeal        Command = "heal"
	CmdSendMail    Command = "send-mail"
	CmdCheckMail   Command = "check-mail"
	CmdBench       Command = "bench"
	CmdFailover    Command = "failover"
	CmdMaintenance Command = "maintenance"
	CmdAlerts      Command = "alerts"
	CmdDown        Command = "down"
	CmdRebuild     Command = "rebuild"
	CmdGrow        Command = "grow"
	CmdRemoveNode  Command = "remove-node"
)

// Request is one command to the supervisor, its arguments typed; the command line parses them (cli/lab.go).
type Request struct {
	Cmd    Command       `json:"cmd"`
	Node   string        `json:"node,omitempty"`   // kill, start, rebuild
	How    string        `json:"how,omitempty"`    // kill: power, link, agent, …
	A      []string      `json:"a,omitempty"`      // partition: one side
	B      []string      `json:"b,omitempty"`      // partition: the other side
	Count  int           `json:"count,omitempty"`  // send-mail: mails (default 1); bench: runs (default 5)
	Within time.Duration `json:"within,omitempty"` // wait-master (default 180 s)
	Since  time.Duration `json:"since,omitempty"`  // alerts: only those received within (0: all)
	On     bool          `json:"on,omitempty"`     // maintenance
	JSON   bool          `json:"json,omitempty"`   // status, alerts
}

// Reply is its answer.
type Reply struct {
	Code int    `json:"code"`
	Out  string `json:"out"`
}

// SocketPath is the supervisor's socket in a lab directory.
func SocketPath(dir string) string { return filepath.Join(dir, "lab.sock") }

// Info is what the supervisor writes to lab.json, for the commands that need no supervisor (exec) and for a
// cleanup after a crash.
type Info struct {
	PID        int               `json:"pid"`
	Namespaces map[string]string `json:"namespaces"` // node or sw/rt/client → namespace name
	Loops      []string          `json:"loops"`      // the Volumes' loop devices
}

// WriteInfo writes lab.json.
func (l *Lab) WriteInfo() error {
	in := Info{PID: os.Getpid(), Namespaces: map[string]string{"sw": l.sw.Name, "rt": l.rt.Name, "client": l.client.Name}, Loops: l.loopDevices()}
	for _, n := range l.Nodes {
		in.Namespaces[n.Name] = n.NS.Name
	}
	b, _ := json.MarshalIndent(in, "", "  ")
	return os.WriteFile(filepath.Join(l.o.Dir, "lab.json"), b, 0o644)
}

// ReadInfo reads lab.json.
func ReadInfo(dir string) (Info, error) {
	var in Info
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return in, err
	}
	return in, json.Unmarshal(b, &in)
}

// Serve answers requests until ctx ends or a "down" request arrives.
func (l *Lab) Serve(ctx context.Context) error {
	sock := SocketPath(l.o.Dir)
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer os.Remove(sock)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			var req Request
			if err := json.NewDecoder(c).Decode(&req); err != nil {
				return
			}
			var out bytes.Buffer
			code := l.Do(ctx, req, &out)
			json.NewEncoder(c).Encode(Reply{Code: code, Out: out.String()})
			if req.Cmd == CmdDown {
				cancel()
			}
		}()
	}
}

// Do runs one command against the lab, writing its output to w; it returns an exit code.
func (l *Lab) Do(ctx context.Context, req Request, w io.Writer) int {
	fail := func(err error) int { fmt.Fprintln(w, err); return 1 }
	node := func() (*Node, error) {
		if req.Node == "" {
			return nil, errors.New("name a node")
		}
		n := l.Node(req.Node)
		if n == nil {
			return nil, fmt.Errorf("no node %q", req.Node)
		}
		return n, nil
	}
	switch req.Cmd {
	case CmdStatus:
		s := l.Status(ctx)
		if req.JSON {
			b, _ := json.MarshalIndent(s, "", "  ")
			fmt.Fprintf(w, "%s\n", b)
		} else {
			s.Print(w)
		}
	case CmdWaitMaster:
		within := cmp.Or(req.Within, 180*time.Second)
		m, err := l.WaitSettled(ctx, within)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(w, m)
	case CmdKill:
		n, err := node()
		if err != nil || req.How == "" {
			return fail(errors.Join(err, errors.New("usage: kill NODE HOW")))
		}
		if err := n.Kill(ctx, req.How); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: %s\n", n.Name, req.How)
	case CmdStart:
		n, err := node()
		if err != nil {
			return fail(err)
		}
		n.SetLinks(true)
		if n.Powered() {
			n.Resume()
			fmt.Fprintf(w, "%s: links up, resumed\n", n.Name)
			return 0
		}
		if err := l.PowerOn(ctx, n, time.Minute); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: powered on\n", n.Name)
	case CmdRebuild:
		n, err := node()
		if err != nil {
			return fail(errors.Join(err, errors.New("usage: rebuild NODE")))
		}
		if err := l.RebuildAndWait(ctx, n, 5*time.Minute); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: rebuilt from snapshot %d (a new, empty root disk; the same user-data and server id; its Volumes kept) and powered on\n", n.Name, l.imageID)
	case CmdGrow:
		added, err := l.Grow(ctx, req.Count)
		if err != nil {
			return fail(err)
		}
		for _, n := range added {
			fmt.Fprintf(w, "%s: created by cluster create --nodes %d and powered on; the members take it in within their discover_interval\n", n.Name, req.Count)
		}
	case CmdRemoveNode:
		n, err := node()
		if err != nil {
			return fail(errors.Join(err, errors.New("usage: remove-node NODE")))
		}
		if err := l.RemoveNode(ctx, n.Name); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: shut down and deleted by cluster remove-node; the members drop it within their discover_interval\n", n.Name)
	case CmdPartition:
		if len(req.A) == 0 || len(req.B) == 0 {
			return fail(errors.New("usage: partition lab-1 / lab-2,lab-3"))
		}
		if err := l.Partition(req.A, req.B); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "partitioned %v from %v\n", req.A, req.B)
	case CmdHeal:
		l.Heal()
		fmt.Fprintln(w, "healed")
	case CmdSendMail:
		n := cmp.Or(req.Count, 1)
		ok, err := l.SendMail(ctx, n)
		fmt.Fprintf(w, "sent %d, acknowledged %d\n", n, ok)
		if err != nil {
			fmt.Fprintf(w, "last error: %v\n", err)
		}
		if ok < n {
			return 1
		}
	case CmdCheckMail:
		acked, missing, err := l.CheckMail(ctx)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "acknowledged %d, readable %d, missing %d\n", acked, acked-len(missing), len(missing))
		for _, m := range missing {
			fmt.Fprintf(w, "missing %s\n", m)
		}
		if len(missing) > 0 {
			return 1
		}
	case CmdBench:
		progress := w
		if req.JSON {
			progress = io.Discard
		}
		r, err := l.BenchFailover(ctx, cmp.Or(req.Count, 5), progress)
		if err != nil {
			return fail(err)
		}
		if req.JSON {
			e := json.NewEncoder(w)
			e.SetIndent("", "  ")
			if err := e.Encode(r.Summary()); err != nil {
				return fail(err)
			}
			break
		}
		r.Print(w)
	case CmdFailover:
		tl, err := l.Failover(ctx, "power")
		if err != nil {
			return fail(err)
		}
		tl.Print(w)
		// The new master's last reports reach the receiver a moment after its first banner.
		l.Alerts.WaitAlerts(tl.Killed, 5*time.Second, Want{Event: "promoted", Node: tl.New})
		fmt.Fprintf(w, "\nwebhook alerts since the kill (signed, verified by the lab's receiver):\n%s", FormatAlerts(l.Alerts.Since(tl.Killed), tl.Killed))
	case CmdMaintenance:
		ans, err := l.Maintenance(req.On)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(w, ans)
	case CmdAlerts:
		var since time.Time
		if req.Since > 0 {
			since = time.Now().Add(-req.Since)
		}
		as := l.Alerts.Since(since)
		if req.JSON {
			b, _ := json.MarshalIndent(as, "", "  ")
			fmt.Fprintf(w, "%s\n", b)
			return 0
		}
		t0 := time.Now()
		if len(as) > 0 {
			t0 = as[0].Received
		}
		fmt.Fprint(w, FormatAlerts(as, t0))
		if n := l.Alerts.Rejected(); n > 0 {
			fmt.Fprintf(w, "%d deliveries failed the signature or schema check\n", n)
		}
	case CmdDown:
		fmt.Fprintln(w, "lab going down")
	default:
		return fail(fmt.Errorf("unknown lab command %q", req.Cmd))
	}
	return 0
}

// Call sends a request to the supervisor of the lab in dir.
func Call(dir string, req Request, timeout time.Duration) (Reply, error) {
	var r Reply
	c, err := net.DialTimeout("unix", SocketPath(dir), 2*time.Second)
	if err != nil {
		return r, fmt.Errorf("no lab running in %s (lab up starts one): %w", dir, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return r, err
	}
	err = json.NewDecoder(c).Decode(&r)
	return r, err
}

// Cleanup removes what a lab whose supervisor died left behind, from its lab.json: every process in its node
// namespaces (by PID), every mount below dir, the loop device and the namespaces.
func Cleanup(dir string) error {
	in, err := ReadInfo(dir)
	if err != nil {
		return err
	}
	var errs []error
	for name, ns := range in.Namespaces {
		if name != "sw" && name != "rt" && name != "client" {
			errs = append(errs, reap.KillNS(ns))
		}
	}
	n := &Node{Dir: dir}
	errs = append(errs, n.unmountAll())
	for _, dev := range in.Loops {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %w: %s", dev, err, out))
		}
	}
	for _, ns := range in.Namespaces {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", ns, err, out))
		}
	}
	os.Remove(filepath.Join(dir, "lab.json"))
	return errors.Join(errs...)
}
