package galera

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Prober answers the agent's quorum question from the local server's status. It remembers whether its last
// answer was serving, for CatchingUp.
type Prober struct {
	Socket  string
	mu      sync.Mutex
	serving bool
}

// ErrCatchingUp is the answer of a member that served at the last probe and is Joined now: a donor after its state
// transfer, catching up before it is Synced again (Donor/Desynced → Joined → Synced; seen for 0.7 s on a MASTER
// whose stack start it cut short, with MariaDB 11.8 in a VM). The agent counts it like an unanswered probe, which
// the brain does not take for a lost quorum before quorum_grace. A joiner's Joined (after Joining) is no answer of
// this kind: it never served.
var ErrCatchingUp = errors.New("galera: Joined after serving: a donor catching up")

// Status reports Primary and Synced, with a summary.
func (p *Prober) Status(ctx context.Context) (primary, synced bool, detail string, err error) {
	db, err := Open(p.Socket)
	if err != nil {
		return false, false, "", err
	}
	defer db.Close()
	st, err := Query(ctx, db)
	if err != nil {
		return false, false, "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if CatchingUp(p.serving, st) {
		return true, false, st.Detail(), ErrCatchingUp
	}
	p.serving = st.Serving()
	return st.ClusterStatus == "Primary", st.Serving(), st.Detail(), nil
}

// CatchingUp says whether st, after a probe that found the member serving, is a donor's moment of catching up.
func CatchingUp(wasServing bool, st Status) bool {
	return wasServing && st.ClusterStatus == "Primary" && st.LocalState == JoinedState && st.Connected
}

// CreateMailcowDB creates mailcow's database and user on the first bootstrap (idempotent), and gives the user this
// cluster's password (a database restored from a backup has it with the old cluster's). The user reaches the
// server through the socket (localhost) and, for mailcow's tools, from anywhere on the private network.
func CreateMailcowDB(ctx context.Context, db *sql.DB, database, user, password string) error {
	for _, v := range []string{database, user} {
		if v == "" || strings.ContainsAny(v, "`'\"\\ ;") {
			return fmt.Errorf("galera: %q is not a plain name", v)
		}
	}
	if password == "" {
		return fmt.Errorf("galera: empty password for %s", user)
	}
	stmts := []string{
		fmt.Sprintf("CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci", database),
	}
	for _, host := range []string{"localhost", "%"} {
		stmts = append(stmts,
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED BY %s", user, host, quote(password)),
			// A database restored from a backup holds the user with the old cluster's password: this cluster's.
			fmt.Sprintf("ALTER USER '%s'@'%s' IDENTIFIED BY %s", user, host, quote(password)),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%s'", database, user, host))
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("galera: create mailcow's database: %w", err)
		}
	}
	return nil
}

// quote makes a SQL string literal (the password never appears in logs or errors: only the statement's error).
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`, "\n", `\n`, "\r", `\r`, "\x1a", `\Z`)
	return "'" + r.Replace(s) + "'"
}
