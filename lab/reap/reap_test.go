package reap_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// TestMain doubles as the owner process: with REAP_TEST_OWNER set it makes a namespace with a process inside, a
// loop device and a mount below the directory it is given, prints what it made, and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv("REAP_TEST_OWNER"); dir != "" {
		if err := owner(dir); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		select {}
	}
	os.Exit(m.Run())
}

func owner(dir string) error {
	ns, err := netns.Add(netns.Unique("mha-reap-"))
	if err != nil {
		return err
	}
	// A daemon inside the namespace, in its own session: it outlives its owner, as a mariadbd did.
	sleeper := ns.Command("sleep", "3600")
	sleeper.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := sleeper.Start(); err != nil {
		return err
	}
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		return err
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		return fmt.Errorf("losetup: %w", err)
	}
	loop := strings.TrimSpace(string(out))
	if err := reap.Claim(reap.Loop, loop, img, "reap test"); err != nil {
		return err
	}
	mp := filepath.Join(dir, "mnt")
	os.MkdirAll(mp, 0o755)
	if err := reap.Claim(reap.Mounts, dir, "", "reap test"); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", mp, "tmpfs", 0, "size=1m"); err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	fmt.Println("made", ns.Name, sleeper.Process.Pid, loop, mp)
	return nil
}

func TestSweepAfterOwnerDied(t *testing.T) {
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed (Debian package util-linux)")
	}
	// A live owner's namespace (this process's) must survive the sweep.
	mine, err := netns.Add(netns.Unique("mha-live-"))
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Del()

	dir := t.TempDir()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "REAP_TEST_OWNER="+dir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "made ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("owner: %q %v", line, err)
	}
	var nsName, loop, mp string
	var pid int
	fmt.Sscan(strings.TrimPrefix(line, "made "), &nsName, &pid, &loop, &mp)
	// The owner dies without cleaning up, as a test binary ended by go test's timeout does.
	cmd.Process.Kill()
	cmd.Wait()

	if _, err := os.Stat("/run/netns/" + nsName); err != nil {
		t.Fatalf("the owner's namespace is not there before the sweep: %v", err)
	}
	if reap.Gone(pid) {
		t.Fatalf("the daemon in the owner's namespace is not running before the sweep")
	}
	if mps, _ := reap.MountsBelow(dir); len(mps) != 1 {
		t.Fatalf("mounts below %s before the sweep: %v", dir, mps)
	}

	gone, err := reap.Sweep(nil)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	kinds := map[reap.Kind]bool{}
	for _, r := range gone {
		kinds[r.Kind] = true
	}
	if !kinds[reap.Netns] || !kinds[reap.Loop] || !kinds[reap.Mounts] {
		t.Errorf("the sweep removed %v; want a namespace, a loop device and a mount root", gone)
	}
	if _, err := os.Stat("/run/netns/" + nsName); err == nil {
		t.Errorf("namespace %s is still there", nsName)
	}
	for i := 0; i < 50 && !reap.Gone(pid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !reap.Gone(pid) {
		t.Errorf("the daemon %d in the owner's namespace still runs", pid)
	}
	if mps, _ := reap.MountsBelow(dir); len(mps) != 0 {
		t.Errorf("mounts left below %s: %v", dir, mps)
	}
	if out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE", loop).Output(); strings.Contains(string(out), dir) {
		t.Errorf("loop device %s still set up: %s", loop, out)
	}
	if _, err := os.Stat("/run/netns/" + mine.Name); err != nil {
		t.Errorf("the sweep removed a live owner's namespace %s", mine.Name)
	}
	recs, _ := reap.Records()
	for _, r := range recs {
		if r.PID == cmd.Process.Pid {
			t.Errorf("record left: %s", r)
		}
	}
}

func TestAliveNamesTheSameProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if reap.Stopped(pid) {
		t.Errorf("a running process counts as stopped")
	}
	syscall.Kill(pid, syscall.SIGSTOP)
	for i := 0; i < 50 && !reap.Stopped(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !reap.Stopped(pid) {
		t.Errorf("a SIGSTOPped process does not count as stopped")
	}
	// A record with this PID but another start time is a reused PID: its owner is gone.
	recs := []reap.Record{{PID: pid, Start: 1}}
	if recs[0].Alive() {
		t.Errorf("a record with a wrong start time counts as alive")
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !reap.Gone(pid) {
		t.Errorf("a reaped process is not gone")
	}
}

// A loop device whose file system was unmounted lazily while a file on it was still open stays attached after
// losetup -d, until the file is closed (the lab's Down saw it: a Volume's device after the lab was down); WaitDetached
// waits for that.
func TestWaitDetached(t *testing.T) {
	for _, c := range []string{"losetup", "mkfs.ext4"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s is not installed (Debian packages util-linux, e2fsprogs)", c)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "vol.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if got := reap.BackingFile(dev); got != img {
		t.Fatalf("BackingFile(%s) = %q, want %q", dev, got, img)
	}
	mp := filepath.Join(dir, "mnt")
	os.MkdirAll(mp, 0o755)
	if err := syscall.Mount(dev, mp, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mp, "open"))
	if err != nil {
		syscall.Unmount(mp, 0)
		t.Fatal(err)
	}
	if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v: %s", err, out)
	}
	if err := reap.WaitDetached(dev, img, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still attached") {
		t.Fatalf("with a file still open: %v, want still attached", err)
	}
	f.Close()
	if err := reap.WaitDetached(dev, img, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := reap.BackingFile(dev); got != "" {
		t.Fatalf("after the last user went: %s backed by %q", dev, got)
	}
}
