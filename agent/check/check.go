// Package check is the agent's local socket and its watcher: the watcher (the small mailcow-ha-check command, run
// by the agent with --watch) asks the socket for the verdict every second and keeps keepalived's track file; the
// local operator commands (check, maintenance, switchover, status) use the same socket.
// It imports little, so that the check command starts in a few milliseconds.
package check

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/stdio"
)

// The check socket: the watcher (and `mailcow-ha check`, for operators) asks the agent over a unix socket
// (mode 0600); `mailcow-ha check` exits 0 for a passing verdict. The agent answers from its cached verdict, so a
// check costs a connection and a line. The protocol is one line each way: "check\n", then "ok <reason>\n" or
// "fail <reason>\n". Local commands (maintenance, switchover, status) use the same socket with other verbs.

// VerdictFunc returns the cached verdict.
type VerdictFunc func() (ok bool, reason string)

// CommandFunc handles a verb other than "check"; it returns the one-line answer.
type CommandFunc func(ctx context.Context, verb string, args []string) string

// Serve listens on path until ctx ends.
func Serve(ctx context.Context, path string, verdict VerdictFunc, cmd CommandFunc, log *slog.Logger) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("check socket: %w", err)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("check socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("check socket: %w", err)
	}
	go func() { <-ctx.Done(); l.Close() }()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("check socket: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serveConn(ctx, c, verdict, cmd)
	}
}

func serveConn(ctx context.Context, c net.Conn, verdict VerdictFunc, cmd CommandFunc) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	if f[0] == "check" {
		ok, why := verdict()
		fmt.Fprintf(c, "%s %s\n", answer(ok), oneLine(why))
		return
	}
	if f[0] == "watch" {
		serveWatch(ctx, c, verdict)
		return
	}
	if cmd == nil {
		fmt.Fprintf(c, "error unknown command\n")
		return
	}
	fmt.Fprintf(c, "%s\n", oneLine(cmd(ctx, f[0], f[1:])))
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// answer is the protocol's word for a verdict.
func answer(ok bool) string {
	if ok {
		return "ok"
	}
	return "fail"
}

// Watch protocol: after "watch\n", the agent writes the verdict line at once, again within WatchLook whenever the
// verdict changes (the push: the watcher needs no question), and at least every WatchBeat (the heartbeat: a
// watcher that hears nothing for longer knows the agent is stuck).
const (
	WatchLook = 100 * time.Millisecond
	WatchBeat = time.Second
)

func serveWatch(ctx context.Context, c net.Conn, verdict VerdictFunc) {
	t := time.NewTicker(WatchLook)
	defer t.Stop()
	last, sent := "", time.Time{}
	for {
		ok, why := verdict()
		if w := answer(ok); w != last || time.Since(sent) >= WatchBeat {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(c, "%s %s\n", w, oneLine(why)); err != nil {
				return
			}
			last, sent = w, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ErrCheckFailed is a verdict of "fail".
var ErrCheckFailed = errors.New("check failed")

// Ask sends one line to the agent's socket and returns its answer. It fails closed: no answer within timeout is
// an error.
func Ask(path, line string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return "", fmt.Errorf("agent socket %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", fmt.Errorf("agent socket: %w", err)
	}
	ans, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("agent socket: no answer: %w", err)
	}
	return strings.TrimSpace(ans), nil
}

// Verdict asks for the verdict: nil when it passes.
func Verdict(path string, timeout time.Duration) (string, error) {
	ans, err := Ask(path, "check", timeout)
	if err != nil {
		return "", err
	}
	word, reason, _ := strings.Cut(ans, " ")
	if word != "ok" {
		return reason, fmt.Errorf("%w: %s", ErrCheckFailed, reason)
	}
	return reason, nil
}

// Main is the mailcow-ha-check command (and mailcow-ha check): exit 0 when the verdict passes, 1 when it
// fails or the agent does not answer in time (fail closed), 2 for bad arguments. With --watch it is the watcher
// that keeps keepalived's track file (see Watch) and runs until it is ended.
//
//	mailcow-ha-check [--socket PATH] [--timeout D] [--quiet]
//	mailcow-ha-check --watch FILE [--socket PATH] [--timeout D] [--interval D] [--fall N] [--rise N]
func Main(ctx context.Context, args []string, io stdio.Stdio) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(io.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: mailcow-ha check [--socket PATH] [--timeout D] [--quiet]\n"+
			"       mailcow-ha check --watch FILE [--socket PATH] [--timeout D] [--interval D] [--fall N] [--rise N]\n\n"+
			"Exit 0 when the agent's verdict passes, 1 when it fails or the agent does not answer in time.\n"+
			"With --watch, keep keepalived's track file: 0 while the verdict passes, 1 (FAULT) after --fall failures in a row.")
	}
	w := WatchOptions{}
	socket := fs.String("socket", DefaultSocket, "the agent's check socket")
	timeout := fs.Duration("timeout", 800*time.Millisecond, "how long the agent has to answer")
	var quiet bool
	fs.BoolVar(&quiet, "quiet", false, "print nothing")
	fs.BoolVar(&quiet, "q", false, "print nothing")
	fs.StringVar(&w.File, "watch", "", "keep this track file of keepalived's")
	fs.Func("interval", "with --watch: how often to expect a verdict (a duration such as 1s)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("a duration such as 1s")
		}
		w.Interval = d
		return nil
	})
	count := func(n *int) func(string) error {
		return func(v string) error {
			c, err := strconv.Atoi(v)
			if err != nil || c < 1 || c > 10 {
				return errors.New("a count from 1 to 10")
			}
			*n = c
			return nil
		}
	}
	fs.Func("fall", "with --watch: failures in a row that make the track file say FAULT", count(&w.Fall))
	fs.Func("rise", "with --watch: passes in a row that clear it", count(&w.Rise))
	switch err := fs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(io.Stderr, "check: unknown argument %q\n", fs.Arg(0))
		return 2
	}
	watching := false
	fs.Visit(func(f *flag.Flag) { watching = watching || f.Name == "watch" })
	if watching && w.File == "" {
		fmt.Fprintln(io.Stderr, "check: --watch needs the track file's path")
		return 2
	}
	if w.File != "" {
		w.Socket, w.Timeout, w.Log = *socket, *timeout, io.Stderr
		if err := Watch(ctx, w); err != nil {
			fmt.Fprintln(io.Stderr, err)
			return 1
		}
		return 0
	}
	if w.Interval != 0 || w.Fall != 0 || w.Rise != 0 {
		fmt.Fprintln(io.Stderr, "check: --interval, --fall and --rise go with --watch")
		return 2
	}
	reason, err := Verdict(*socket, *timeout)
	if err != nil {
		if !quiet {
			fmt.Fprintln(io.Stderr, "check:", err)
		}
		return 1
	}
	if !quiet {
		fmt.Fprintln(io.Stdout, "ok:", reason)
	}
	return 0
}

// DefaultSocket is api.socket's default.
const DefaultSocket = "/run/mailcow-ha/agent.sock"
