package galera

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// Prober answers the agent's quorum question from the local server's status.
type Prober struct{ Socket string }

// Status reports Primary and Synced, with a summary.
func (p Prober) Status(ctx context.Context) (primary, synced bool, detail string, err error) {
	db, err := Open(p.Socket)
	if err != nil {
		return false, false, "", err
	}
	defer db.Close()
	st, err := Query(ctx, db)
	if err != nil {
		return false, false, "", err
	}
	return st.ClusterStatus == "Primary", st.Serving(), st.Detail(), nil
}

// CreateMailcowDB creates mailcow's database and user on the first bootstrap (idempotent). The user reaches the
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
