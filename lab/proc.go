package lab

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// proc is a daemon that the lab supervises: its child, started in a node's network namespace (nsenter --net, so
// that it shares the host's mount namespace, as a node's processes share their machine's), waited for and reaped.
type proc struct {
	name string
	argv []string
	log  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	restart bool          // start again when it ends (systemd's Restart=always)
	delay   time.Duration // RestartSec
	stopped bool
}

// nsCommand runs argv inside the namespace's network only.
func nsCommand(ns string, argv ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns, "--"}, argv...)...)
}

func (p *proc) start(ns string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "---- %s: starting %s\n", time.Now().Format(time.RFC3339Nano), p.name)
	cmd := nsCommand(ns, p.argv...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("lab: starting %s: %w", p.name, err)
	}
	p.cmd, p.exited, p.stopped = cmd, make(chan struct{}), false
	exited := p.exited
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "---- %s: %s ended: %v\n", time.Now().Format(time.RFC3339Nano), p.name, err)
		f.Close()
		close(exited)
		p.mu.Lock()
		again := p.restart && !p.stopped && p.cmd == cmd
		d := p.delay
		p.mu.Unlock()
		if again {
			time.Sleep(d)
			p.mu.Lock()
			again = !p.stopped && p.cmd == cmd
			p.mu.Unlock()
			if again {
				p.start(ns)
			}
		}
	}()
	return nil
}

// pid is the running process's PID (nsenter execs the daemon, so it is the daemon's), or 0.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.exited:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// stop ends the daemon by its PID: sig, then SIGKILL after grace; it does not come back.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	p.stopped = true
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-exited
	}
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	pid := p.pid()
	if pid == 0 {
		return fmt.Errorf("%s is not running", p.name)
	}
	return syscall.Kill(pid, sig)
}

// Gone reports whether a process has ended (or is a zombie its parent has not reaped yet).
func Gone(pid int) bool { return reap.Gone(pid) }

// pidFile reads a daemon's pid file.
func pidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: no pid", path)
	}
	return pid, nil
}

// RSS sums the resident memory of every process in the lab's node namespaces (shared pages are counted once per
// process, so this is an upper bound).
func (l *Lab) RSS() int64 {
	var kb int64
	for _, n := range l.Nodes {
		pids, _ := reap.PIDsIn(n.NS.Name)
		for _, pid := range pids {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					var k int64
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &k)
					kb += k
				}
			}
		}
	}
	return kb << 10
}
