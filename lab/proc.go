package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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

// nsPIDs lists every process whose network namespace is ns: a node's whole "machine", its containers included
// (they use host networking inside the node's namespace).
func nsPIDs(ns string) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			out = append(out, pid)
		}
	}
	return out, nil
}

// killNS SIGKILLs every process in the namespace, as pulling a server's power would, and waits until they are
// gone (or zombies) for up to 5 s. Everything is frozen first (SIGSTOP), so that no process sees another die and
// reacts: a keepalived that got SIGTERM from its dying parent would send a priority-0 advert, which a power cut
// never does.
func killNS(ns string) error {
	if pids, err := nsPIDs(ns); err == nil {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
	}
	for i := 0; i < 50; i++ {
		pids, err := nsPIDs(ns)
		if err != nil {
			return err
		}
		alive := 0
		for _, pid := range pids {
			if !zombie(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				alive++
			}
		}
		if alive == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("lab: processes in %s survive SIGKILL", ns)
}

// Gone reports whether a process has ended (or is a zombie its parent has not reaped yet).
func Gone(pid int) bool { return zombie(pid) }

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// RSS sums the resident memory of every process in the lab's node namespaces (shared pages are counted once per
// process, so this is an upper bound).
func (l *Lab) RSS() int64 {
	var kb int64
	for _, n := range l.Nodes {
		pids, _ := nsPIDs(n.NS.Name)
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
