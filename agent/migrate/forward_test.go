package migrate

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshServer runs a real sshd on a free loopback port (root by key, its host key known) and returns a Source for it.
func sshServer(t *testing.T) (Source, string) {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("needs OpenSSH (%s): %v", p, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: sshd logs in as root, as migrate does")
	}
	dir := t.TempDir()
	for _, k := range []string{"host_key", "id"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	write := func(f, s string) {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("authorized_keys", read("id.pub")+"\n")
	write("known_hosts", fmt.Sprintf("[127.0.0.1]:%d %s\n", port, read("host_key.pub")))
	write("ssh_config", fmt.Sprintf("Host 127.0.0.1\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n",
		port, filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")))
	write("sshd_config", fmt.Sprintf("ListenAddress 127.0.0.1:%d\nHostKey %s\nPidFile none\nAuthorizedKeysFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nAllowTcpForwarding yes\n",
		port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys")))
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		t.Fatal(err)
	}
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var log strings.Builder
	sshd.Stderr = &log
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sshd.Process.Kill(); _ = sshd.Wait() })
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(end) {
			t.Fatalf("sshd did not listen on %d: %s", port, log.String())
		}
	}
	return Source{Host: "127.0.0.1", SSHConfig: filepath.Join(dir, "ssh_config")}, fmt.Sprintf("127.0.0.1:%d", port)
}

// The database's forward beside the shared connection is held by the ssh that forward started: it answers as soon
// as forward returns, and stop takes it away. Through the shared connection, ssh handed the forward to the
// connection's master and exited at once, which failed a lab run's cut-over ("ssh ended"), and stop did not end it.
func TestForwardIsItsOwn(t *testing.T) {
	s, addr := sshServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	disconnect, err := s.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer disconnect()
	if out, err := s.Run(ctx, "echo through the shared connection"); err != nil || !strings.Contains(out, "shared") {
		t.Fatalf("a command over the shared connection: %q, %v", out, err)
	}
	// The forward goes to sshd's own port: its banner proves the socket reaches the old server.
	for i := range 5 {
		sock := filepath.Join(t.TempDir(), "fwd.sock")
		stop, err := s.forward(ctx, sock, addr)
		if err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err != nil {
			stop()
			t.Fatalf("forward %d: the socket does not answer: %v", i, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		banner := make([]byte, 4)
		_, err = c.Read(banner)
		c.Close()
		if err != nil || string(banner) != "SSH-" {
			t.Errorf("forward %d: read %q, %v through it, want sshd's banner", i, banner, err)
		}
		stop()
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			t.Fatalf("forward %d: the socket still answers after stop: something else holds the forward", i)
		}
	}
}
