// Package reap keeps a machine-wide record of what a lab or a test harness makes outside its own process — network
// namespaces (and every process inside them), loop devices, mounts — and removes what an owner left behind when it
// died without cleaning up (a test binary ended by its timeout, a SIGKILL, a panic).
//
// Each thing is one small JSON file in Dir, written when it is made (Claim) and removed when its owner removes the
// thing (Release). The owner is a process, named by its PID and its start time (so a reused PID is not taken for
// the owner). Sweep cleans up every record whose owner is gone; the lab, the VM harness and every test that makes a
// namespace sweep before they make anything, and `make test` sweeps once more at its end and fails when anything
// is left. Dir is below /run, a tmpfs: a reboot, which ends namespaces, loop devices and processes too, also
// empties it.
package reap

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Dir holds the records.
const Dir = "/run/mailcow-ha/reap"

// Kind is what a record names.
type Kind string

// The kinds of record, in the order Sweep removes them: the processes go with their namespace first, then the
// mounts, the loop devices, and last the namespaces themselves.
const (
	Netns  Kind = "netns"  // Value: the namespace's name (ip netns); every process in it is killed
	Mounts Kind = "mounts" // Value: a directory; everything mounted below it is unmounted
	Loop   Kind = "loop"   // Value: the loop device; Detail: its backing file (detached only while it still matches)
)

// Record is one thing made by an owner process.
type Record struct {
	Kind   Kind   `json:"kind"`
	Value  string `json:"value"`
	Detail string `json:"detail,omitempty"`
	PID    int    `json:"owner_pid"`
	Start  uint64 `json:"owner_start"` // the owner's start time (clock ticks after boot, /proc/PID/stat field 22)
	What   string `json:"what,omitempty"`
}

func (r Record) String() string {
	s := fmt.Sprintf("%s %s (owner PID %d", r.Kind, r.Value, r.PID)
	if r.What != "" {
		s += ", " + r.What
	}
	return s + ")"
}

func path(kind Kind, value string) string {
	sum := sha256.Sum256([]byte(value))
	return filepath.Join(Dir, string(kind)+"-"+hex.EncodeToString(sum[:8])+".json")
}

// Claim records that this process made the thing; what says who, for the messages (a test's name, "lab").
func Claim(kind Kind, value, detail, what string) error {
	start, err := startTime(os.Getpid())
	if err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	b, _ := json.Marshal(Record{Kind: kind, Value: value, Detail: detail, PID: os.Getpid(), Start: start, What: what})
	tmp := path(kind, value) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	if err := os.Rename(tmp, path(kind, value)); err != nil {
		return fmt.Errorf("reap: %w", err)
	}
	return nil
}

// Release forgets the thing: its owner removed it.
func Release(kind Kind, value string) {
	os.Remove(path(kind, value))
}

// Records lists every record, alive or not.
func Records() ([]Record, error) {
	ents, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reap: %w", err)
	}
	var out []Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(Dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil || r.Kind == "" || r.Value == "" {
			// A record cut short by a crash names nothing that can be cleaned up safely: drop it, say so.
			os.Remove(filepath.Join(Dir, e.Name()))
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// Alive reports whether the record's owner still runs (the same process: PID and start time).
func (r Record) Alive() bool {
	start, err := startTime(r.PID)
	return err == nil && start == r.Start && !Gone(r.PID)
}

// Sweep removes what every dead owner left behind, and its records; it returns what it removed. It never touches
// a live owner's things.
func Sweep(log *slog.Logger) ([]Record, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	all, err := Records()
	if err != nil {
		return nil, err
	}
	var dead []Record
	for _, r := range all {
		if !r.Alive() {
			dead = append(dead, r)
		}
	}
	order := []Kind{Netns, Mounts, Loop}
	slices.SortStableFunc(dead, func(a, b Record) int { return slices.Index(order, a.Kind) - slices.Index(order, b.Kind) })
	var errs []error
	// Processes first: nothing may hold a mount or a device while it goes.
	for _, r := range dead {
		if r.Kind == Netns {
			if err := KillNS(r.Value); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	var done []Record
	for _, r := range dead {
		var err error
		switch r.Kind {
		case Mounts:
			err = UnmountBelow(r.Value)
		case Loop:
			err = detach(r.Value, r.Detail)
		case Netns:
			if _, serr := os.Stat("/run/netns/" + r.Value); serr == nil {
				if out, xerr := exec.Command("ip", "netns", "del", r.Value).CombinedOutput(); xerr != nil {
					err = fmt.Errorf("ip netns del %s: %w: %s", r.Value, xerr, strings.TrimSpace(string(out)))
				}
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reap: %s: %w", r, err))
			continue
		}
		log.Warn("removed a leftover of a dead owner", "kind", r.Kind, "value", r.Value, "owner_pid", r.PID, "owner", r.What)
		Release(r.Kind, r.Value)
		done = append(done, r)
	}
	return done, errors.Join(errs...)
}

// detach detaches the loop device while its backing file is still the recorded one (the device number may have
// been handed to someone else since).
func detach(dev, backing string) error {
	out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE", dev).Output()
	if err != nil {
		return nil // not set up any more
	}
	got := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(out)), "(deleted)"))
	if backing != "" && got != backing {
		return nil
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		return fmt.Errorf("losetup -d %s: %w: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// BackingFile is the file behind the loop device dev, or "" when dev is not set up.
func BackingFile(dev string) string {
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
}

// WaitDetached waits up to within until the loop device dev no longer has backing behind it. `losetup -d` of a
// device still in use (a file system unmounted lazily, whose last file is still open) succeeds at once, and the
// kernel detaches the device only when its last user goes: the device outlives the command by a moment.
func WaitDetached(dev, backing string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for BackingFile(dev) == backing && backing != "" {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is still attached to %s %s after losetup -d", dev, backing, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// MountsBelow lists the mount points below dir, in mount order (per /proc/self/mountinfo).
func MountsBelow(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out, nil
}

// UnmountBelow forces off every mount below dir, the last mounted first (MNT_DETACH, as a hot-unplug would).
func UnmountBelow(dir string) error {
	mps, err := MountsBelow(dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(mps) - 1; i >= 0; i-- {
		if err := syscall.Unmount(mps[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("umount %s: %w", mps[i], err))
		}
	}
	return errors.Join(errs...)
}

// PIDsIn lists every process whose network namespace is the named one.
func PIDsIn(ns string) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+ns, &want); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, os.ErrNotExist)
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

// KillNS SIGKILLs every process in the namespace, as pulling a server's power would, and waits until they are
// gone (or zombies) for up to 5 s. Everything is frozen first (SIGSTOP), so that no process sees another die and
// reacts: a keepalived that got SIGTERM from its dying parent would send a priority-0 advert, which a power cut
// never does.
func KillNS(ns string) error {
	if pids, err := PIDsIn(ns); err == nil {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGSTOP)
		}
	}
	for i := 0; i < 50; i++ {
		pids, err := PIDsIn(ns)
		if err != nil {
			return err
		}
		alive := 0
		for _, pid := range pids {
			if !Gone(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				alive++
			}
		}
		if alive == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("reap: processes in %s survive SIGKILL", ns)
}

// Gone reports whether a process has ended (or is a zombie its parent has not reaped yet).
func Gone(pid int) bool {
	st, err := stat(pid)
	return err != nil || st.state == 'Z' || st.state == 'X'
}

// Stopped reports whether a process is stopped by a signal (SIGSTOP: state T).
func Stopped(pid int) bool {
	st, err := stat(pid)
	return err == nil && st.state == 'T'
}

type procStat struct {
	state byte
	start uint64
}

// stat reads a process's state and start time from /proc/PID/stat (the fields after the command's closing
// parenthesis, which may itself hold spaces and parentheses).
func stat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

func startTime(pid int) (uint64, error) {
	st, err := stat(pid)
	return st.start, err
}
