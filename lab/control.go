package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// The supervisor (`mailcow-ha lab supervise`) owns the lab and answers the other lab commands on a unix socket in
// the lab directory, one JSON request per connection.

// Request is one command to the supervisor.
type Request struct {
	Cmd  string   `json:"cmd"`
	Args []string `json:"args"`
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
	Loop       string            `json:"loop"`
}

// WriteInfo writes lab.json.
func (l *Lab) WriteInfo() error {
	in := Info{PID: os.Getpid(), Namespaces: map[string]string{"sw": l.sw.Name, "rt": l.rt.Name, "client": l.client.Name}, Loop: l.loop}
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
			if req.Cmd == "down" {
				cancel()
			}
		}()
	}
}

// Do runs one command against the lab, writing its output to w; it returns an exit code.
func (l *Lab) Do(ctx context.Context, req Request, w io.Writer) int {
	fail := func(err error) int { fmt.Fprintln(w, err); return 1 }
	node := func() (*Node, error) {
		if len(req.Args) == 0 {
			return nil, errors.New("name a node")
		}
		n := l.Node(req.Args[0])
		if n == nil {
			return nil, fmt.Errorf("no node %q", req.Args[0])
		}
		return n, nil
	}
	switch req.Cmd {
	case "status":
		s := l.Status(ctx)
		if len(req.Args) > 0 && req.Args[0] == "--json" {
			b, _ := json.MarshalIndent(s, "", "  ")
			fmt.Fprintf(w, "%s\n", b)
		} else {
			s.Print(w)
		}
	case "wait-master":
		within := 180 * time.Second
		if len(req.Args) > 0 {
			if d, err := time.ParseDuration(req.Args[0]); err == nil {
				within = d
			}
		}
		m, err := l.WaitSettled(ctx, within)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(w, m)
	case "kill":
		n, err := node()
		if err != nil || len(req.Args) < 2 {
			return fail(errors.Join(err, errors.New("usage: kill NODE HOW")))
		}
		if err := n.Kill(ctx, req.Args[1]); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: %s\n", n.Name, req.Args[1])
	case "start":
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
		if err := l.SimPower(n, true); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "%s: powered on\n", n.Name)
	case "partition":
		a, b, ok := strings.Cut(strings.Join(req.Args, " "), "/")
		if !ok {
			return fail(errors.New("usage: partition n1 / n2,n3"))
		}
		split := func(s string) []string {
			return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
		}
		if err := l.Partition(split(a), split(b)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(w, "partitioned %v from %v\n", split(a), split(b))
	case "heal":
		l.Heal()
		fmt.Fprintln(w, "healed")
	case "send-mail":
		n := 1
		if len(req.Args) > 0 {
			n, _ = strconv.Atoi(req.Args[0])
		}
		ok, err := l.SendMail(ctx, n)
		fmt.Fprintf(w, "sent %d, acknowledged %d\n", n, ok)
		if err != nil {
			fmt.Fprintf(w, "last error: %v\n", err)
		}
		if ok < n {
			return 1
		}
	case "check-mail":
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
	case "bench":
		runs := 5
		if len(req.Args) > 0 {
			runs, _ = strconv.Atoi(req.Args[0])
		}
		r, err := l.BenchFailover(ctx, runs, w)
		if err != nil {
			return fail(err)
		}
		r.Print(w)
	case "failover":
		tl, err := l.Failover(ctx, "power")
		if err != nil {
			return fail(err)
		}
		tl.Print(w)
		// The new master's last reports reach the receiver a moment after its first banner.
		l.Alerts.WaitAlerts(tl.Killed, 5*time.Second, Want{Event: "promoted", Node: tl.New})
		fmt.Fprintf(w, "\nwebhook alerts since the kill (signed, verified by the lab's receiver):\n%s", FormatAlerts(l.Alerts.Since(tl.Killed), tl.Killed))
	case "maintenance":
		if len(req.Args) != 1 || (req.Args[0] != "on" && req.Args[0] != "off") {
			return fail(errors.New("usage: maintenance on|off"))
		}
		ans, err := l.Maintenance(req.Args[0] == "on")
		if err != nil {
			return fail(err)
		}
		fmt.Fprintln(w, ans)
	case "alerts":
		var since time.Time
		if len(req.Args) > 0 && req.Args[0] != "" {
			d, err := time.ParseDuration(req.Args[0])
			if err != nil {
				return fail(fmt.Errorf("alerts --since: %w", err))
			}
			since = time.Now().Add(-d)
		}
		as := l.Alerts.Since(since)
		if len(req.Args) > 1 && req.Args[1] == "--json" {
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
	case "down":
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
	if in.Loop != "" {
		if out, err := exec.Command("losetup", "-d", in.Loop).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("losetup -d %s: %w: %s", in.Loop, err, out))
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
