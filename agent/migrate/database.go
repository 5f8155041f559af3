package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// Dump is the database's dump in the staging area (mode 0600: it holds mailcow's password hashes); the switch
// imports it and deletes it.
const Dump = "mailcow.sql"

// SQLAddress is where the old server's mysql-mailcow listens on its host, from mailcow.conf's SQL_PORT (mailcow's
// compose file publishes it there; the default is 127.0.0.1:13306).
func SQLAddress(conf map[string]string) string {
	p := conf["SQL_PORT"]
	switch {
	case p == "":
		return "127.0.0.1:13306"
	case !strings.Contains(p, ":"):
		return "127.0.0.1:" + p
	}
	return p
}

// DumpDatabase writes the old server's mailcow database to the stage: an SSH forward from a socket in a private
// directory to mysql-mailcow's published port, and mariadb-dump through it as mailcow.conf's DBUSER (its password in
// a 0600 option file, never an argument) in one consistent transaction. It returns the dump's size.
func DumpDatabase(ctx context.Context, s Source, conf map[string]string, mount string) (int64, error) {
	db, user, pass := conf["DBNAME"], conf["DBUSER"], conf["DBPASS"]
	if db == "" || user == "" || pass == "" {
		return 0, fmt.Errorf("migrate: %s's mailcow.conf lacks DBNAME, DBUSER or DBPASS", s.Host)
	}
	tmp, err := os.MkdirTemp("", "mailcow-ha-migrate-")
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer os.RemoveAll(tmp)
	opts := filepath.Join(tmp, "client.cnf")
	if err := os.WriteFile(opts, []byte(fmt.Sprintf("[client]\nuser=%s\npassword=%s\n", optValue(user), optValue(pass))), 0o600); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	sock := filepath.Join(tmp, "sql.sock")
	stop, err := s.forward(ctx, sock, SQLAddress(conf))
	if err != nil {
		return 0, fmt.Errorf("migrate: the forward to the database (%s): %w", SQLAddress(conf), err)
	}
	defer stop()
	stage := filepath.Join(mount, Dir)
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	part := filepath.Join(stage, Dump+".part")
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer os.Remove(part)
	// --skip-add-locks: Galera does not replicate LOCK TABLES. --single-transaction: one snapshot of every table.
	dump := child.Command(ctx, "mariadb-dump", "--defaults-extra-file="+opts, "--socket="+sock,
		"--single-transaction", "--skip-add-locks", "--routines", "--triggers", "--events", "--hex-blob", "--add-drop-table", db)
	var derr bytes.Buffer
	dump.Stdout, dump.Stderr = f, &derr
	err = dump.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("migrate: mariadb-dump of %s's %s: %w: %s", s.Host, db, err, lastLines(derr.String(), 3))
	}
	st, err := os.Stat(part)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if err := os.Rename(part, filepath.Join(stage, Dump)); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	return st.Size(), nil
}

// optValue quotes a value for a MariaDB option file.
func optValue(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// forward makes the unix socket sock a forward to addr on the old server, held by an ssh of its own until stop.
// It has a connection of its own (ControlPath=none): through the shared connection (Connect) ssh hands the forward
// to the connection's master and exits at once, so the ssh started here would not hold it, stop would not end it,
// and its exit raced the socket's first answer (a lab run failed "ssh ended" so).
func (s Source) forward(ctx context.Context, sock, addr string) (stop func(), err error) {
	s.control = ""
	return s.sshUntilSocket(ctx, sock, 20*time.Second, "-N", "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes", "-L", sock+":"+addr)
}

// waitSocket waits for the forward's socket to answer, or for ssh to end.
func waitSocket(ctx context.Context, sock string, ended <-chan struct{}, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ended:
			return errors.New("ssh ended")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no socket after %s", within)
		}
	}
}
