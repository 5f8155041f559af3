package cli

// config apply, diff and show: the cluster's configuration, which every node layers on its user-data (docs/config.md,
// "Cluster configuration").

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/provision"
)

const configUsage = `usage: mailcow-ha config apply FILE [--dry-run] [--within 20m] [--config PATH]
       mailcow-ha config diff FILE [--config PATH]
       mailcow-ha config show [--config PATH]

Run on a node of the cluster. FILE holds cluster-wide settings (failover.*, keepalived.*, alerts.*, mailcow's
hostname, time zone and conf, hcloud.token to rotate the token); docs/config.md lists them. apply checks FILE on
this node's configuration, hands it to every member as the next revision, applies what can change live at once,
and restarts the agents one at a time (BACKUPs first, one switchover) for what cannot. diff shows what apply would
change; show prints the revision each member runs.
`

// ConfigCmd runs the config subcommands.
func ConfigCmd(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprint(stdio.Stderr, configUsage)
		return ExitUsage
	}
	switch args[0] {
	case "apply", "diff":
		return configApply(ctx, args[0], args[1:], stdio)
	case "show":
		return configShow(ctx, args[1:], stdio)
	case "-h", "--help", "help":
		fmt.Fprint(stdio.Stdout, configUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha config: unknown command %q\n\n%s", args[0], configUsage)
	return ExitUsage
}

// memberRevision is what one member said of its cluster configuration.
type memberRevision struct {
	m   config.Member
	st  api.PeerState
	err error
}

// revisions asks every data member for its state (arbitrators serve no peer API: they follow the members).
func (s memberSession) revisions(ctx context.Context) []memberRevision {
	var out []memberRevision
	for _, m := range s.cfg.DataMembers() {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := s.peers.State(qctx, s.peer(m))
		cancel()
		out = append(out, memberRevision{m, st, err})
	}
	return out
}

// newest is the cluster configuration with the highest revision that a member runs (revision 0: none).
func (s memberSession) newest(ctx context.Context, revs []memberRevision) (config.ClusterDoc, error) {
	var d config.ClusterDoc
	var from *memberRevision
	for i, r := range revs {
		if r.err == nil && r.st.ConfigRevision > d.Revision {
			d.Revision, from = r.st.ConfigRevision, &revs[i]
		}
	}
	if from == nil {
		return d, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	d.Revision, d.TOML, err = s.peers.ClusterConfig(qctx, s.peer(from.m))
	if err != nil {
		return d, fmt.Errorf("revision %d from %s: %w", from.st.ConfigRevision, from.m.Name, err)
	}
	return d, nil
}

func configApply(ctx context.Context, verb string, args []string, stdio Stdio) int {
	fs := newFlags("config "+verb, "config "+verb+" FILE [--config PATH]", stdio)
	src := sourceFlags(fs)
	dry := fs.Bool("dry-run", verb == "diff", "show what would change; change nothing")
	within := fs.Duration("within", 20*time.Minute, "how long one agent may take from its restart to a Synced BACKUP")
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:] // FILE first, the flags after it
	}
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha config %s: %v\n", verb, err)
		return code
	}
	if file == "" {
		return fail(ExitUsage, errors.New("give one FILE first: the cluster configuration (TOML)"))
	}
	text, err := readLimited(file, config.MaxUserData)
	if err != nil {
		return fail(ExitUsage, err)
	}
	src.Stdin = stdio.Stdin
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		return fail(code, err)
	}
	// Checked here first, on this node's own configuration: a problem names FILE's key and line, and no node is
	// asked. Each node checks it again on its own.
	if _, probs := config.CheckCluster(file, []byte(text), sess.base.Name, sess.base.Data,
		config.SecretFiles{Owner: os.Geteuid()}); probs.Err() != nil {
		return fail(ExitUsage, probs.Err())
	}
	revs := sess.revisions(ctx)
	cur, err := sess.newest(ctx, revs)
	if err != nil {
		return fail(ExitFailure, err)
	}
	next := config.ClusterDoc{Revision: cur.Revision + 1, TOML: text}
	if cur.Revision > 0 && cur.Hash() == next.Hash() {
		next.Revision = cur.Revision // the same document again: its revision, for the members that lack it
	}
	changes, err := config.ClusterChanges(cur.TOML, text)
	if err != nil {
		return fail(ExitUsage, err)
	}
	printChanges(stdio.Stdout, cur.Revision, next.Revision, changes)
	if *dry {
		return ExitOK
	}
	var restart []config.Member
	var refused, unreached []string
	for _, r := range revs {
		if r.err != nil {
			unreached = append(unreached, r.m.Name)
			fmt.Fprintf(stdio.Stdout, "%-15s not reached (%v): it fetches revision %d from a peer when it is back\n", r.m.Name, r.err, next.Revision)
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ans, err := sess.peers.ApplyConfig(qctx, sess.peer(r.m), next.Revision, next.TOML)
		cancel()
		switch {
		case err != nil:
			unreached = append(unreached, r.m.Name)
			fmt.Fprintf(stdio.Stdout, "%-15s not reached (%v): it fetches revision %d from a peer when it is back\n", r.m.Name, err, next.Revision)
		case ans.Outcome == api.ConfigRefused:
			refused = append(refused, r.m.Name)
			fmt.Fprintf(stdio.Stdout, "%-15s refused: %s\n", r.m.Name, ans.Error)
		case ans.Outcome == api.ConfigRestart:
			restart = append(restart, r.m)
			fmt.Fprintf(stdio.Stdout, "%-15s revision %d kept; needs its agent restarted\n", r.m.Name, ans.Revision)
		default:
			fmt.Fprintf(stdio.Stdout, "%-15s revision %d %s\n", r.m.Name, ans.Revision, ans.Outcome)
		}
	}
	if len(refused) > 0 {
		return fail(ExitFailure, fmt.Errorf("refused by %s: fix FILE and apply it again (the members that took it run revision %d)",
			strings.Join(refused, ", "), next.Revision))
	}
	switchovers := 0
	if len(restart) > 0 {
		switchovers, err = provision.RestartAgents(ctx, sess.roll(*within, false, stdio), restart,
			func(ctx context.Context, m config.Member) error {
				qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				return sess.peers.Restart(qctx, sess.peer(m))
			})
		if err != nil {
			return fail(ExitFailure, fmt.Errorf("%w (every member keeps revision %d; run config apply again to go on)", err, next.Revision))
		}
	}
	fmt.Fprintf(stdio.Stdout, "revision %d applied: %d live, %d restarted, %d switchover", next.Revision,
		len(revs)-len(unreached)-len(restart), len(restart), switchovers)
	if len(unreached) > 0 {
		fmt.Fprintf(stdio.Stdout, "; not reached: %s", strings.Join(unreached, ", "))
	}
	fmt.Fprintln(stdio.Stdout)
	return ExitOK
}

func printChanges(w io.Writer, from, to int64, changes []config.Change) {
	if len(changes) == 0 {
		fmt.Fprintf(w, "revision %d -> %d: no setting changes\n", from, to)
		return
	}
	fmt.Fprintf(w, "revision %d -> %d:\n", from, to)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tFROM\tTO\tAPPLIED")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Key, orDash(c.From), orDash(c.To), c.Apply)
	}
	tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// configShow prints the revision each member runs.
func configShow(ctx context.Context, args []string, stdio Stdio) int {
	sess, code, ok := listSession(ctx, "config show", args, stdio)
	if !ok {
		return code
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREVISION\tPENDING RESTART")
	for _, r := range sess.revisions(ctx) {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t?\t(%v)\n", r.m.Name, r.err)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\n", r.m.Name, r.st.ConfigRevision, r.st.ConfigPending)
	}
	tw.Flush()
	return ExitOK
}

// readLimited reads a file of at most max bytes.
func readLimited(path string, max int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > max {
		return "", fmt.Errorf("%s: over %d bytes", path, max)
	}
	return string(b), nil
}
