package galera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
	"github.com/mailcow-ha/mailcow-ha/tail"
)

// Control starts and stops the local mariadbd: as the agent's child (Server: the tests and the lab) or through
// systemd (Systemd: an appliance node).
type Control interface {
	Start(bootstrap bool, from Position) error
	Done() <-chan struct{}
	Stop(timeout time.Duration)
	Position(ctx context.Context) (Position, error)
	MarkSafeToBootstrap(p Position) error
	Dir() string // the datadir
}

var (
	_ Control = (*Server)(nil)
	_ Control = (*Systemd)(nil)
)

// Server runs mariadbd as a supervised child with its own datadir, socket and pid file. In production systemd
// runs mariadb.service instead; the tests and the lab use this.
type Server struct {
	Bin          string // default mariadbd
	DefaultsFile string // the rendered my.cnf
	DataDir      string
	ErrorLog     string
	Wrap         []string // run under this command, such as ip netns exec NAME
	Output       io.Writer

	c child.Child
}

// InitDataDir creates the system tables when the datadir is empty (mariadb-install-db). A failed attempt on an
// empty datadir is cleared and tried again (twice): it has been seen to fail once in a while here, for no reason
// that its output gave.
func (s *Server) InitDataDir(ctx context.Context, user string) error {
	if _, err := os.Stat(filepath.Join(s.DataDir, "mysql")); err == nil {
		return nil
	}
	if entries, err := os.ReadDir(s.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("galera: %s has files but no system tables: refusing to initialise it", s.DataDir)
	}
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		if err := os.MkdirAll(s.DataDir, 0o750); err != nil {
			return fmt.Errorf("galera: %w", err)
		}
		out, err := child.Command(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+s.DataDir, "--user="+user,
			"--auth-root-authentication-method=socket", "--skip-test-db").CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("galera: mariadb-install-db (attempt %d): %v: %s", attempt, err, headOf(out, 800))
		if ctx.Err() != nil {
			break
		}
		os.RemoveAll(s.DataDir)
		time.Sleep(time.Second)
	}
	return last
}

func headOf(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Start starts mariadbd. bootstrap starts a new Primary component; from, when known, is the position to
// start it at (without it MariaDB creates a new cluster uuid and forks the history).
func (s *Server) Start(bootstrap bool, from Position) error {
	bin := s.Bin
	if bin == "" {
		bin = "mariadbd"
	}
	argv := append(append([]string{}, s.Wrap...), bin, "--defaults-file="+s.DefaultsFile)
	if bootstrap {
		argv = append(argv, "--wsrep-new-cluster")
		if from.Known() {
			argv = append(argv, "--wsrep_start_position="+from.String())
		}
	}
	if err := s.c.Start(argv, s.Output); err != nil {
		return fmt.Errorf("galera: mariadbd: %w", err)
	}
	return nil
}

// Done is closed when mariadbd has exited.
func (s *Server) Done() <-chan struct{} { return s.c.Done() }

// Dir is the datadir.
func (s *Server) Dir() string { return s.DataDir }

// Stop shuts mariadbd down cleanly (SIGTERM), then kills it after timeout.
func (s *Server) Stop(timeout time.Duration) { s.c.Stop(timeout) }

// Kill ends mariadbd at once, as a crash does.
func (s *Server) Kill() { s.c.Kill() }

// Position reads grastate.dat; where its seqno is -1 (after a crash) it runs mariadbd --wsrep-recover and reads
// the recovered position from the log it writes.
func (s *Server) Position(ctx context.Context) (Position, error) {
	return position(ctx, s.DataDir, s.Bin, s.DefaultsFile, s.Wrap)
}

func position(ctx context.Context, dataDir, bin, defaultsFile string, wrap []string) (Position, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "grastate.dat"))
	if errors.Is(err, os.ErrNotExist) {
		return Position{UUID: ZeroUUID, Seqno: -1}, nil
	}
	if err != nil {
		return Position{}, fmt.Errorf("galera: %w", err)
	}
	p, err := ParseGrastate(b)
	if err != nil {
		return Position{}, err
	}
	if p.Seqno >= 0 || p.UUID == ZeroUUID {
		return p, nil
	}
	log := filepath.Join(dataDir, "wsrep-recover.log")
	os.Remove(log)
	if bin == "" {
		bin = "mariadbd"
	}
	args := []string{"--wsrep-recover", "--log-error=" + log}
	if defaultsFile != "" {
		args = append([]string{"--defaults-file=" + defaultsFile}, args...)
	}
	argv := append(append(append([]string{}, wrap...), bin), args...)
	if out, err := child.Command(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return Position{}, fmt.Errorf("galera: --wsrep-recover: %v: %s", err, tail.Bytes(string(out), 400))
	}
	lb, err := os.ReadFile(log)
	if err != nil {
		return Position{}, fmt.Errorf("galera: --wsrep-recover wrote no log: %w", err)
	}
	uuid, seqno, ok := ParseRecovered(lb)
	if !ok {
		return Position{}, fmt.Errorf("galera: --wsrep-recover found no position: %s", tail.Bytes(string(lb), 400))
	}
	p.UUID, p.Seqno = uuid, seqno
	return p, nil
}

// MarkSafeToBootstrap records, on the node chosen to bootstrap after a full crash, its recovered position with
// safe_to_bootstrap: 1; mariadbd refuses --wsrep-new-cluster without it.
func (s *Server) MarkSafeToBootstrap(p Position) error { return markSafe(s.DataDir, p) }

func markSafe(dataDir string, p Position) error {
	p.SafeToBootstrap = true
	path := filepath.Join(dataDir, "grastate.dat")
	if err := os.WriteFile(path+".tmp", FormatGrastate(p), 0o660); err != nil {
		return fmt.Errorf("galera: %w", err)
	}
	// Keep the file mariadbd's: it runs as its own user and must rewrite it.
	if fi, err := os.Stat(dataDir); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if err := os.Chown(path+".tmp", int(st.Uid), int(st.Gid)); err != nil {
				return fmt.Errorf("galera: %w", err)
			}
		}
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("galera: %w", err)
	}
	return nil
}
