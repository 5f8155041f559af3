// Package migrate moves a single-server mailcow into the cluster (`mailcow-ha migrate --from HOST`): it copies the
// old server's state over SSH into a staging area on the shared Volume while the old server still serves, copies
// again what changed at the cut-over with the database's dump, and the MASTER's agent then switches mailcow to it.
package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/dotenv"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// Source is the old server: an SSH destination (root, by key: BatchMode, and the host's key must be known) and
// where mailcow keeps its tree and Docker its volumes there.
type Source struct {
	Host       string // user@host; a bare host means root@host
	MailcowDir string // mailcow-dockerized's checkout, with mailcow.conf
	VolumesDir string // Docker's volumes (the local driver's <project>_<volume>/_data)
	SSHConfig  string // an ssh_config file (-F); "" is ssh's own (~/.ssh/config)
	control    string // the shared connection's socket (Connect)
}

// Destination is user@host.
func (s Source) Destination() string {
	if strings.Contains(s.Host, "@") {
		return s.Host
	}
	return "root@" + s.Host
}

// sshArgs are ssh's options: no password prompt, no unknown host key accepted, keep-alives.
func (s Source) sshArgs() []string {
	args := []string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "ServerAliveInterval=15", "-o", "ConnectTimeout=15"}
	if s.SSHConfig != "" {
		args = append([]string{"-F", s.SSHConfig}, args...)
	}
	if s.control != "" {
		args = append(args, "-o", "ControlPath="+s.control)
	}
	return args
}

// Connect opens one SSH connection to the old server that the later commands and copies share (ssh's
// ControlMaster): each of them then costs no new key exchange; the database's forward has its own (forward). It
// runs until close, as a child of this process (no ControlPersist: nothing stays behind); the function it returns
// closes it.
func (s *Source) Connect(ctx context.Context) (func(), error) {
	dir, err := os.MkdirTemp("", "mailcow-ha-ssh-")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	ctl := filepath.Join(dir, "control")
	stop, err := s.sshUntilSocket(ctx, ctl, 30*time.Second, "-M", "-N", "-o", "ControlPath="+ctl)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.control = ctl
	return func() { stop(); os.RemoveAll(dir); s.control = "" }, nil
}

// sshUntilSocket starts a long-lived ssh (the connection's master, a forward) as a child of this process and waits
// until sock answers; stop ends it (SIGTERM) and waits for it.
func (s Source) sshUntilSocket(ctx context.Context, sock string, within time.Duration, args ...string) (stop func(), err error) {
	cmd := child.Command(context.WithoutCancel(ctx), "ssh", append(append(s.sshArgs(), args...), "--", s.Destination())...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("migrate: ssh to %s: %w", s.Host, err)
	}
	ended := make(chan struct{}) // closed when ssh has ended
	go func() { _ = cmd.Wait(); close(ended) }()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-ended
	}
	if err := waitSocket(ctx, sock, ended, within); err != nil {
		stop()
		return nil, fmt.Errorf("migrate: ssh to %s: %w: %s", s.Host, err, strings.TrimSpace(errb.String()))
	}
	return stop, nil
}

// RsyncShell is rsync's -e: ssh with sshArgs (rsync splits it at spaces).
func (s Source) RsyncShell() string {
	return strings.Join(append([]string{"ssh"}, s.sshArgs()...), " ")
}

// Run runs a shell command on the old server and returns its output.
func (s Source) Run(ctx context.Context, command string) (string, error) {
	cmd := child.Command(ctx, "ssh", append(s.sshArgs(), "--", s.Destination(), command)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("migrate: on %s: %q: %w: %s", s.Host, command, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// quote makes a path one word for the old server's shell.
func quote(p string) string { return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'" }

// Conf reads the old server's mailcow.conf (the same syntax as Compose's .env, which it is).
func (s Source) Conf(ctx context.Context) (map[string]string, error) {
	out, err := s.Run(ctx, "cat "+quote(s.MailcowDir+"/mailcow.conf"))
	if err != nil {
		return nil, err
	}
	conf, err := dotenv.UnmarshalBytesWithLookup([]byte(out), nil)
	if err != nil {
		return nil, fmt.Errorf("migrate: %s's mailcow.conf: %w", s.Host, err)
	}
	if conf["MAILCOW_HOSTNAME"] == "" {
		return nil, fmt.Errorf("migrate: %s:%s/mailcow.conf has no MAILCOW_HOSTNAME: not a mailcow tree", s.Host, s.MailcowDir)
	}
	return conf, nil
}
