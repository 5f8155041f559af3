package unit

import (
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// privateBus starts a dbus-daemon of the test's own, and returns its address once it listens.
func privateBus(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon is not installed (Debian's dbus-daemon): the test runs go-systemd against a bus of its own")
	}
	sock := filepath.Join(t.TempDir(), "bus")
	cmd := child.Command(t.Context(), "dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=unix:path="+sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return "unix:path=" + sock
		}
		if time.Now().After(deadline) {
			t.Fatal("dbus-daemon did not listen within 10 s")
		}
	}
}

func dial(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	c, err := dbus.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(); err != nil {
		t.Fatal(err)
	}
	return c
}
