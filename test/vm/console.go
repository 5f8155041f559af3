package vm

// A VM's serial console: its text, how long it has been quiet, and waiting on it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"
)

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// ConsoleText returns the serial console so far, without terminal escapes.
func (v *VM) ConsoleText() string {
	b, _ := os.ReadFile(v.Console())
	return ansi.ReplaceAllString(string(b), "")
}

// ErrFailure is returned by WaitConsole when a failure pattern shows first.
var ErrFailure = errors.New("failure on the console")

// DefaultFailures are what no scenario expects on the console.
var DefaultFailures = []*regexp.Regexp{
	regexp.MustCompile(`Kernel panic`),
	regexp.MustCompile(`end Kernel panic`),
	regexp.MustCompile(`Failed to start .*(mailcow-ha|docker|nftables|cloud-init|systemd-networkd)`),
}

// Quiet is how long the VM's console has printed nothing, as of now.
func (v *VM) Quiet() time.Duration {
	var size int64
	if fi, err := os.Stat(v.Console()); err == nil {
		size = fi.Size()
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if size != v.conSize || v.conSince.IsZero() {
		v.conSize, v.conSince = size, now
	}
	q := now.Sub(v.conSince)
	v.conLongest = max(v.conLongest, q)
	return q
}

// LongestQuiet is the longest the console was silent while someone waited on it.
func (v *VM) LongestQuiet() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.conLongest
}

// Quiet is the shortest silence of the running VMs' consoles: how long no running VM has printed anything.
func (h *Harness) Quiet() time.Duration {
	q := time.Duration(-1)
	for _, v := range h.vms() {
		if v.Running() {
			if vq := v.Quiet(); q < 0 || vq < q {
				q = vq
			}
		}
	}
	return max(q, 0)
}

// WaitConsole waits until want matches the console. It fails when a failure pattern matches, QEMU ends, the
// console printed nothing for quiet (the guest is stuck), or ctx ends. It sets no bound of its own on how long a
// guest that makes progress may take: under emulation that is the machine's speed, not the product's.
func (v *VM) WaitConsole(ctx context.Context, want *regexp.Regexp, failures []*regexp.Regexp, quiet time.Duration) (string, error) {
	for {
		text := v.ConsoleText()
		if m := want.FindString(text); m != "" {
			return m, nil
		}
		for _, f := range failures {
			if m := f.FindString(text); m != "" {
				return "", fmt.Errorf("%s: %w: %q", v.Name, ErrFailure, m)
			}
		}
		if !v.Running() {
			return "", fmt.Errorf("%s: QEMU ended before %q", v.Name, want)
		}
		if q := v.Quiet(); q > quiet {
			return "", fmt.Errorf("%s: no %q, and the console printed nothing for %s", v.Name, want, q.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: no %q within the test's time: %w", v.Name, want, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ConsoleTail returns the console's last lines (for failure messages).
func (v *VM) ConsoleTail(n int) string {
	lines := strings.Split(strings.TrimRight(v.ConsoleText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
