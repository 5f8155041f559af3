// Package check is the agent's local socket: keepalived's vrrp_script asks it for the verdict through the
// small mailcow-ha-check command, and the local operator commands (maintenance, switchover, status) use it too.
// It imports little, so that the check command starts in a few milliseconds.
package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/stdio"
)

// The check socket: keepalived's vrrp_script runs `mailcow-ha check`, which asks the agent over a unix socket
// (mode 0600) and exits 0 for a passing verdict. The agent answers from its cached verdict, so a check costs a
// connection and a line. The protocol is one line each way: "check\n", then "ok <reason>\n" or
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
		word := "fail"
		if ok {
			word = "ok"
		}
		fmt.Fprintf(c, "%s %s\n", word, oneLine(why))
		return
	}
	if cmd == nil {
		fmt.Fprintf(c, "error unknown command\n")
		return
	}
	fmt.Fprintf(c, "%s\n", oneLine(cmd(ctx, f[0], f[1:])))
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

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
// fails or the agent does not answer in time (fail closed), 2 for bad arguments.
//
//	mailcow-ha-check [--socket PATH] [--timeout D] [--quiet]
func Main(_ context.Context, args []string, io stdio.Stdio) int {
	socket, timeout, quiet := DefaultSocket, 800*time.Millisecond, false
	for i := 0; i < len(args); i++ {
		a := strings.TrimLeft(args[i], "-")
		val := func() (string, bool) {
			if k, v, ok := strings.Cut(a, "="); ok {
				a = k
				return v, true
			}
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			return "", false
		}
		switch strings.SplitN(a, "=", 2)[0] {
		case "socket":
			v, ok := val()
			if !ok {
				fmt.Fprintln(io.Stderr, "check: --socket needs a path")
				return 2
			}
			socket = v
		case "timeout":
			v, ok := val()
			d, err := time.ParseDuration(v)
			if !ok || err != nil {
				fmt.Fprintln(io.Stderr, "check: --timeout needs a duration such as 800ms")
				return 2
			}
			timeout = d
		case "quiet", "q":
			quiet = true
		case "h", "help":
			fmt.Fprintln(io.Stdout, "Usage: mailcow-ha check [--socket PATH] [--timeout D] [--quiet]\n\nExit 0 when the agent's verdict passes, 1 when it fails or the agent does not answer in time.")
			return 0
		default:
			fmt.Fprintf(io.Stderr, "check: unknown argument %q\n", args[i])
			return 2
		}
	}
	reason, err := Verdict(socket, timeout)
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
