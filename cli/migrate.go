package cli

// mailcow-ha migrate --from HOST: a single-server mailcow moved into the cluster (docs/backup.md, "Move a
// single-server mailcow into the cluster"). Run on the MASTER, first while the old server serves (repeatable), then
// with --final at the cut-over.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/migrate"
)

const migrateSynopsis = `migrate --from [USER@]HOST [--final] [--mailcow-dir DIR] [--volumes-dir DIR] [--ssh-config FILE] [--stop-command CMD] [--config PATH]

On the MASTER. Without --final it copies the old server's mail and state (each Docker volume that the cluster keeps
on its Volume, and the certificates) into a staging area on the Volume while the old server serves; run it as often
as you like, each run sends only what changed. With --final (the cut-over) it stops mail on the old server
(--stop-command), copies what changed since, dumps the old server's database, and has this node's agent switch:
in maintenance, mailcow stopped, the database imported into Galera, the staged directories put in place (what they
replace is kept on the Volume), mailcow started. It also prints mailcow.conf's choices as the cluster
configuration's keys (for config apply). SSH: as root by key, the old server's host key already known.`

// Migrate runs mailcow-ha migrate.
func Migrate(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("migrate", migrateSynopsis, stdio)
	src := sourceFlags(fs)
	from := fs.String("from", "", "the old server, as ssh reaches it: [USER@]HOST (root by default; required)")
	final := fs.Bool("final", false, "the cut-over: stop mail on the old server, copy what changed and the database, and switch the cluster to it")
	dir := fs.String("mailcow-dir", "/opt/mailcow-dockerized", "mailcow-dockerized's checkout on the old server")
	vols := fs.String("volumes-dir", "/var/lib/docker/volumes", "Docker's volumes on the old server")
	sshConfig := fs.String("ssh-config", "", "an ssh_config file for the connection (default: root's ~/.ssh/config)")
	stop := fs.String("stop-command", "", "the shell command that stops mail on the old server at --final, leaving mysql-mailcow up (default: docker compose stop of every other service in --mailcow-dir)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha migrate: "+format+"\n", a...)
		return code
	}
	if *from == "" {
		return fail(ExitUsage, "--from is required")
	}
	if *stop == "" {
		*stop = "cd '" + strings.ReplaceAll(*dir, "'", `'\''`) + "' && docker compose stop $(docker compose config --services | grep -vx mysql-mailcow)"
	}
	old := migrate.Source{Host: *from, MailcowDir: *dir, VolumesDir: *vols, SSHConfig: *sshConfig}
	sess, self, st, code, err := thisNode(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	if st.Role != string(failover.RoleMaster) || !st.Mounted {
		return fail(ExitFailure, "%s is not the MASTER with the Volume mounted (%s, mounted %t): run it on the MASTER", self.Name, st.Role, st.Mounted)
	}
	mount := sess.cfg.Mailcow.DataMount
	disconnect, err := old.Connect(ctx)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	defer disconnect()
	conf, err := old.Conf(ctx)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	project := conf["COMPOSE_PROJECT_NAME"]
	if project == "" {
		project = "mailcowdockerized"
	}
	choices := migrate.ConfChoices(conf)
	if choices.Hostname != sess.cfg.Mailcow.Hostname {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha migrate: warning: the old server is %s, the cluster's mailcow.hostname is %s: its certificates and clients name the old one (see the choices below)\n",
			choices.Hostname, sess.cfg.Mailcow.Hostname)
	}
	t0 := time.Now()
	if *final {
		if _, err := old.Run(ctx, *stop); err != nil {
			return fail(ExitFailure, "stopping mail on the old server: %v (nothing was switched)", err)
		}
		fmt.Fprintf(stdio.Stdout, "mail stopped on %s\n", *from)
	}
	c, err := migrate.Copy(ctx, old, project, mount)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	fmt.Fprintf(stdio.Stdout, "copied from %s: %s (%d bytes received) in %s\n", *from, strings.Join(c.Dirs, ", "), c.Bytes, c.Took.Round(10*time.Millisecond))
	for _, m := range c.Missing {
		fmt.Fprintf(stdio.Stdout, "  not on the old server: %s\n", m)
	}
	choicesFile := filepath.Join(mount, migrate.Dir, "mailcow-conf.toml")
	if err := os.WriteFile(choicesFile, []byte(choices.TOML()), 0o600); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	if !*final {
		fmt.Fprintf(stdio.Stdout, "mailcow.conf's choices, as the cluster configuration's keys (also in %s; merge them into the configuration and config apply):\n%s", choicesFile, choices.TOML())
		fmt.Fprintf(stdio.Stdout, "the old server still serves; at the cut-over: mailcow-ha migrate --from %s --final\n", *from)
		return ExitOK
	}
	size, err := migrate.DumpDatabase(ctx, old, conf, mount)
	if err != nil {
		return fail(ExitFailure, "%v (nothing was switched; mail on the old server stays stopped)", err)
	}
	fmt.Fprintf(stdio.Stdout, "mailcow.conf's choices, as the cluster configuration's keys: %s\ndatabase %s dumped: %d bytes\n", choicesFile, conf["DBNAME"], size)
	if err := migrate.MarkReady(mount, migrate.Staged{Host: *from, Time: time.Now().UTC()}); err != nil {
		return fail(ExitFailure, "%v", err)
	}
	ans, err := sess.peers.SwitchMigration(ctx, sess.peer(self))
	if err == nil && ans.Error != "" {
		err = fmt.Errorf("%s", ans.Error)
	}
	if err != nil {
		return fail(ExitFailure, "the switch on %s: %v (mail on the old server stays stopped; mailcow started again: %t)", self.Name, err, ans.Started)
	}
	fmt.Fprintf(stdio.Stdout, "switched: mailcow on %s runs on %s's state (%s; database imported in %s); the Volume's directories before it are in %s\n",
		self.Name, *from, strings.Join(ans.Dirs, ", "), time.Duration(ans.ImportMS)*time.Millisecond, ans.Replaced)
	fmt.Fprintf(stdio.Stdout, "mail was stopped for %s; point DNS at the Floating IP, then shut the old server down\n", time.Since(t0).Round(100*time.Millisecond))
	return ExitOK
}
