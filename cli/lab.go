package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

const labUsage = `Usage: mailcow-ha lab COMMAND [flags]

A real mailcow-ha cluster on this machine (root): network namespaces, keepalived, MariaDB Galera, a dockerd per
node with the stub mailcow stack, the agents, and the simulated Hetzner API.

Commands:
  up [--nodes 3|5] [--mail-cache DIR]
                                   build the lab (cluster create against the simulator: lab-1…lab-N) and wait
                                   for a MASTER (the first time, mmdebstrap makes the mail servers' root file
                                   system in DIR, default build/cache/mailservers)
  status [--json]                  every node's role, Galera, stack, Volume and Floating IP
  down                             stop and remove everything the lab made
  exec NODE|client -- CMD...       run a command in a node's (or the client's) network namespace
  kill NODE --how HOW              power|link|agent|keepalived|db|postfix|postfix-restart|isolate|hang
  start NODE                       power a node on again (or bring its links up, resume a hang)
  rebuild NODE                     like hcloud server rebuild: power off, a new empty root disk (no state or
                                   config; the Volumes stay), the same user-data and server id, power on
  grow N                           cluster create --nodes N: new servers, each a node that joins (no failover)
  remove-node NODE                 cluster remove-node: a BACKUP shut down and deleted; the others drop it
  partition lab-1 / lab-2,lab-3    cut the private network between two groups
  heal                             undo every partition
  send-mail N                      send N mails to the Floating IP from the client
  check-mail                       check that every acknowledged mail is readable over IMAP
  failover                         power off the MASTER; print the failover timeline and the alerts
  alerts [--since 5m] [--json]     the webhook alerts every agent sent to the lab's receiver
  maintenance on|off               pause (or resume) automatic actions on every node
  bench failover [--runs N]        the failover benchmark; --json: each phase's median, min and max, the
                 [--json]          floor, the API requests per takeover
  sweep [--check] [--below DIR]    remove what labs and tests whose process died left behind (namespaces and
                                   their processes, mounts, loop devices); --check: fail when anything of ours
                                   remains (records, or loop devices and mounts below DIR)

A node's mailcow.create_command (not for operators):
  create-stub --docker-host URL --data DIR --socket-dir DIR [--hostname NAME] [--mail-image TAG --mail-user A,B]
                                   the lab: the stub's 18 containers through the Engine API (Debian 12's
                                   Compose v1 cannot read mailcow's compose file); --mail-image: Debian's
                                   postfix and dovecot play postfix-mailcow and dovecot-mailcow
  compose-stub --mailcow-dir DIR --data DIR [--hostname NAME] [--mail-image TAG --mail-user A,B]
                                   the VM tests: mailcow's real compose project (docker compose config, then
                                   create) with a layer that swaps only the images for the stub
  create-stub ... --mailcow-dir DIR  with a tree: each container labelled with its service's image in the tree's
                                   compose file, and created anew when a new release changed it
A node's mailcow.pull_command (not for operators), run in a staged release's tree:
  pull-stub --docker-host URL      tags the stub image as every image the release's compose file names (the
                                   lab's stand-in for docker compose pull: no registry here)

Every command takes --dir DIR (default build/lab).
`

// Lab runs the local lab's commands.
func Lab(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		w := stdio.Stderr
		if len(args) > 0 {
			w = stdio.Stdout
		}
		fmt.Fprint(w, labUsage)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("lab "+sub, "lab "+sub+" [flags]", stdio)
	dir := fs.String("dir", "build/lab", "the lab's directory")
	nodes := fs.Int("nodes", 3, "members (up): 3 or 5")
	jsonOut := fs.Bool("json", false, "JSON output (status, alerts, bench)")
	how := fs.String("how", "", "how to break the node (kill)")
	runs := fs.Int("runs", 5, "failovers to measure in each order (bench)")
	since := fs.Duration("since", 0, "alerts: only those received within this long (default: all)")
	stub := fs.String("stub", "", "the mailcow-stub binary (default: next to this one)")
	dockerHost := fs.String("docker-host", "", "create-stub: the node's dockerd")
	data := fs.String("data", "", "create-stub: the Volume's mount point")
	sockDir := fs.String("socket-dir", "", "create-stub: the MariaDB socket directory")
	hostname := fs.String("hostname", "", "create-stub: the name the stub services greet with")
	healthEvery := fs.Duration("health-interval", time.Second, "create-stub: Docker health check interval of postfix, dovecot and nginx")
	healthTimeout := fs.Duration("health-timeout", 2*time.Second, "create-stub: how long one Docker health check may take")
	mailImage := fs.String("mail-image", "", "create-stub, compose-stub: the mail servers' image, which plays postfix-mailcow and dovecot-mailcow")
	mailUsers := fs.String("mail-user", "", "create-stub, compose-stub: the mailboxes of the mail servers' image, comma-separated addresses")
	mailCache := fs.String("mail-cache", "build/cache/mailservers", "up: where the mail servers' root file system is kept (made there when missing)")
	mailcowDir := fs.String("mailcow-dir", "", "compose-stub: mailcow's tree, with the agent's override and mailcow.conf; create-stub: the tree whose compose file names each service's image (optional)")
	check := fs.Bool("check", false, "sweep: fail when anything of ours remains afterwards")
	below := fs.String("below", "", "sweep --check: also look for loop devices and mounts below this directory")
	var cmdArgs []string
	if i := indexOf(rest, "--"); i >= 0 {
		rest, cmdArgs = rest[:i], rest[i+1:]
	}
	// Flags and positional arguments may interleave (lab kill lab-1 --how power).
	var pos []string
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return ExitOK
			}
			return ExitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitUsage
	}
	call := func(req lab.Request, timeout time.Duration) int {
		r, err := lab.Call(d, req, timeout)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, err)
			return ExitFailure
		}
		fmt.Fprint(stdio.Stdout, r.Out)
		return r.Code
	}
	usage := func(msg string) int {
		fmt.Fprintln(stdio.Stderr, "usage: mailcow-ha lab "+msg)
		return ExitUsage
	}
	switch sub {
	case "up":
		return labUp(ctx, d, *nodes, *stub, *mailCache, stdio)
	case "supervise":
		return labSupervise(ctx, d, *nodes, *stub, *mailCache, stdio)
	case "down":
		return labDown(d, stdio)
	case "status":
		return call(lab.Request{Cmd: lab.CmdStatus, JSON: *jsonOut}, 30*time.Second)
	case "kill":
		if len(pos) != 1 || *how == "" {
			return usage("kill NODE --how power|link|agent|keepalived|db|postfix|postfix-restart|isolate|hang")
		}
		return call(lab.Request{Cmd: lab.CmdKill, Node: pos[0], How: *how}, 30*time.Second)
	case "start":
		if len(pos) != 1 {
			return usage("start NODE")
		}
		return call(lab.Request{Cmd: lab.CmdStart, Node: pos[0]}, 10*time.Minute)
	case "rebuild":
		if len(pos) != 1 {
			return usage("rebuild NODE")
		}
		return call(lab.Request{Cmd: lab.CmdRebuild, Node: pos[0]}, 10*time.Minute)
	case "grow":
		n := 0
		if len(pos) == 1 {
			n, _ = strconv.Atoi(pos[0])
		}
		if n < 4 || n > lab.MaxNodes {
			return usage(fmt.Sprintf("grow N: N is the new number of nodes, 4 to %d", lab.MaxNodes))
		}
		return call(lab.Request{Cmd: lab.CmdGrow, Count: n}, 10*time.Minute)
	case "remove-node":
		if len(pos) != 1 {
			return usage("remove-node NODE")
		}
		return call(lab.Request{Cmd: lab.CmdRemoveNode, Node: pos[0]}, 10*time.Minute)
	case "partition":
		a, b, ok := strings.Cut(strings.Join(pos, " "), "/")
		split := func(s string) []string {
			return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
		}
		if !ok || len(split(a)) == 0 || len(split(b)) == 0 {
			return usage("partition lab-1 / lab-2,lab-3")
		}
		return call(lab.Request{Cmd: lab.CmdPartition, A: split(a), B: split(b)}, 10*time.Minute)
	case "heal", "check-mail", "failover":
		if len(pos) != 0 {
			return usage(sub)
		}
		return call(lab.Request{Cmd: lab.Command(sub)}, 10*time.Minute)
	case "send-mail":
		n := 1
		if len(pos) > 1 {
			return usage("send-mail [N]")
		}
		if len(pos) == 1 {
			var err error
			if n, err = strconv.Atoi(pos[0]); err != nil || n < 1 {
				return usage("send-mail [N]: N is a number of mails, not " + strconv.Quote(pos[0]))
			}
		}
		return call(lab.Request{Cmd: lab.CmdSendMail, Count: n}, 10*time.Minute)
	case "maintenance":
		if len(pos) != 1 || (pos[0] != "on" && pos[0] != "off") {
			return usage("maintenance on|off")
		}
		return call(lab.Request{Cmd: lab.CmdMaintenance, On: pos[0] == "on"}, 10*time.Minute)
	case "alerts":
		return call(lab.Request{Cmd: lab.CmdAlerts, Since: *since, JSON: *jsonOut}, 30*time.Second)
	case "bench":
		if len(pos) != 1 || pos[0] != "failover" || *runs < 1 {
			return usage("bench failover [--runs N] [--json]")
		}
		return call(lab.Request{Cmd: lab.CmdBench, Count: *runs, JSON: *jsonOut}, time.Duration(*runs)*10*time.Minute)
	case "exec":
		return labExec(d, pos, cmdArgs, stdio)
	case "sweep":
		return labSweep(*check, *below, stdio)
	case "create-stub":
		return labCreateStub(ctx, deploy.Options{DataMount: *data, SocketDir: *sockDir, Hostname: *hostname,
			HealthInterval: *healthEvery, HealthTimeout: *healthTimeout, MailImage: *mailImage,
			MailUsers: splitList(*mailUsers)}, *dockerHost, *mailcowDir, stdio)
	case "pull-stub":
		return labPullStub(ctx, *dockerHost, stdio)
	case "compose-stub":
		return labComposeStub(ctx, *mailcowDir, deploy.LayerOptions{DataMount: *data, Hostname: *hostname,
			HealthInterval: *healthEvery, HealthTimeout: *healthTimeout, MailImage: *mailImage, MailUsers: splitList(*mailUsers)}, stdio)
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha lab: unknown command %q\n\n%s", sub, labUsage)
	return ExitUsage
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' })
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// labUp starts the supervisor in the background and waits until the lab has a MASTER.
func labUp(ctx context.Context, dir string, nodes int, stub, mailCache string, stdio Stdio) int {
	if _, err := lab.Call(dir, lab.Request{Cmd: lab.CmdStatus}, 5*time.Second); err == nil {
		fmt.Fprintf(stdio.Stderr, "a lab already runs in %s (mailcow-ha lab down first)\n", dir)
		return ExitFailure
	}
	// The mail servers' image in the foreground, so that its first build (two to three minutes) shows here.
	mailCache, err := filepath.Abs(mailCache)
	if err == nil {
		_, err = mailservers.RootFS(ctx, mailservers.Inputs{}, mailCache, stdio.Stdout)
	}
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "lab:", err)
		return ExitFailure
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	logPath := filepath.Join(dir, "supervisor.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	args := []string{"lab", "supervise", "--dir", dir, "--nodes", strconv.Itoa(nodes), "--mail-cache", mailCache}
	if stub != "" {
		args = append(args, "--stub", stub)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	logf.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(stdio.Stdout, "lab: supervisor pid %d, log %s\n", cmd.Process.Pid, logPath)
	for {
		if _, err := lab.Call(dir, lab.Request{Cmd: lab.CmdStatus}, 5*time.Second); err == nil {
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			fmt.Fprintf(stdio.Stderr, "lab: the supervisor ended (%v):\n%s", err, tail.Bytes(string(b), 3000))
			return ExitFailure
		case <-ctx.Done():
			return ExitFailure
		case <-time.After(500 * time.Millisecond):
		}
	}
	r, err := lab.Call(dir, lab.Request{Cmd: lab.CmdWaitMaster, Within: 240 * time.Second}, 5*time.Minute)
	if err != nil || r.Code != 0 {
		fmt.Fprintf(stdio.Stderr, "lab: no MASTER: %v %s", err, r.Out)
		return ExitFailure
	}
	fmt.Fprintf(stdio.Stdout, "lab: up with MASTER %s after %s\n", strings.TrimSpace(r.Out), time.Since(began).Round(100*time.Millisecond))
	r, _ = lab.Call(dir, lab.Request{Cmd: lab.CmdStatus}, 30*time.Second)
	fmt.Fprint(stdio.Stdout, r.Out)
	return ExitOK
}

// labSupervise is the lab's long-running parent: it builds the lab, answers the other commands, and takes it all
// down on "lab down" or SIGTERM.
func labSupervise(ctx context.Context, dir string, nodes int, stub, mailCache string, stdio Stdio) int {
	log := slog.New(slog.NewTextHandler(stdio.Stderr, nil))
	self, err := os.Executable()
	if err != nil {
		log.Error("lab", "err", err)
		return ExitFailure
	}
	if stub == "" {
		stub = filepath.Join(filepath.Dir(self), "mailcow-stub")
	}
	if _, err := os.Stat(stub); err != nil {
		log.Error("lab: the mailcow-stub binary is missing (make build puts it next to mailcow-ha)", "err", err)
		return ExitFailure
	}
	sctx, stop := signalContext(ctx)
	defer stop()
	mailCache, err = filepath.Abs(mailCache)
	if err != nil {
		log.Error("lab", "err", err)
		return ExitFailure
	}
	l, err := lab.Up(sctx, lab.Options{Dir: dir, Nodes: nodes, Bin: self, StubBin: stub, MailCache: mailCache, Logger: log})
	if err != nil {
		log.Error("lab up failed", "err", err)
		return ExitFailure
	}
	if err := l.WriteInfo(); err != nil {
		log.Error("lab", "err", err)
	}
	serr := l.Serve(sctx)
	log.Info("lab going down")
	derr := l.Down()
	os.Remove(filepath.Join(dir, "lab.json"))
	if err := errors.Join(serr, derr); err != nil {
		log.Error("lab down", "err", err)
		return ExitFailure
	}
	log.Info("lab down")
	return ExitOK
}

func signalContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	ch := make(chan os.Signal, 1)
	signalNotify(ch)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// labDown asks the supervisor to take the lab down and waits until it has ended; with no supervisor it removes
// what lab.json names (a crashed supervisor).
func labDown(dir string, stdio Stdio) int {
	info, ierr := lab.ReadInfo(dir)
	r, err := lab.Call(dir, lab.Request{Cmd: lab.CmdDown}, 30*time.Second)
	if err == nil {
		fmt.Fprint(stdio.Stdout, r.Out)
		for i := 0; i < 600 && ierr == nil && !lab.Gone(info.PID); i++ {
			time.Sleep(500 * time.Millisecond)
		}
		fmt.Fprintln(stdio.Stdout, "lab: down")
		return ExitOK
	}
	if ierr != nil {
		fmt.Fprintln(stdio.Stdout, "lab: nothing runs in", dir)
		return ExitOK
	}
	fmt.Fprintln(stdio.Stderr, "lab: the supervisor does not answer; removing what lab.json names")
	if err := lab.Cleanup(dir); err != nil {
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	return ExitOK
}

// labSweep removes what dead owners left (reap.Sweep) and, with check, fails when anything of ours remains: a
// record that could not be cleaned up, or a loop device or mount below below.
func labSweep(check bool, below string, stdio Stdio) int {
	gone, err := reap.Sweep(nil)
	for _, r := range gone {
		fmt.Fprintf(stdio.Stdout, "removed a leftover: %s\n", r)
	}
	if err != nil {
		fmt.Fprintln(stdio.Stderr, err)
	}
	if !check {
		if err != nil {
			return ExitFailure
		}
		return ExitOK
	}
	var left []string
	var inUse []string // the mount roots and loop devices of running labs
	recs, rerr := reap.Records()
	if rerr != nil {
		left = append(left, rerr.Error())
	}
	for _, r := range recs {
		if r.Alive() {
			// A lab that still runs (make demo, lab up) is not a leftover.
			fmt.Fprintf(stdio.Stdout, "still in use: %s\n", r)
			inUse = append(inUse, r.Value)
			continue
		}
		left = append(left, fmt.Sprintf("%s: its owner is dead and it could not be removed", r))
	}
	if below != "" {
		abs, err := filepath.Abs(below)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, err)
			return ExitUsage
		}
		used := func(p string) bool {
			return slices.ContainsFunc(inUse, func(u string) bool { return p == u || strings.HasPrefix(p, u+"/") })
		}
		mps, _ := reap.MountsBelow(abs)
		for _, m := range mps {
			if !used(m) {
				left = append(left, "mount "+m)
			}
		}
		out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && strings.HasPrefix(f[1], abs+"/") && !used(f[0]) {
				left = append(left, "loop device "+line)
			}
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(stdio.Stderr, "left behind:\n  %s\n", strings.Join(left, "\n  "))
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, "nothing of ours is left: no namespace, process in one, mount or loop device")
	return ExitOK
}

func labExec(dir string, pos, cmdArgs []string, stdio Stdio) int {
	if len(pos) != 1 || len(cmdArgs) == 0 {
		fmt.Fprintln(stdio.Stderr, "usage: mailcow-ha lab exec NODE|client -- CMD [ARGS...]")
		return ExitUsage
	}
	info, err := lab.ReadInfo(dir)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "no lab runs in", dir)
		return ExitFailure
	}
	ns, ok := info.Namespaces[pos[0]]
	if !ok {
		fmt.Fprintf(stdio.Stderr, "no node %q in the lab\n", pos[0])
		return ExitUsage
	}
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, cmdArgs...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdio.Stdin, stdio.Stdout, stdio.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(stdio.Stderr, err)
		return ExitFailure
	}
	return ExitOK
}

func signalNotify(ch chan<- os.Signal) { signal.Notify(ch, syscall.SIGTERM, os.Interrupt) }
