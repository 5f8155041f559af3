package cli

// mailcow update and mailcow release: a new mailcow release on every node, staged first while mail flows, then
// run on the MASTER in place (in maintenance: only the containers whose definition changed are created anew),
// then laid over the BACKUPs' trees (docs/operations.md, "Update mailcow").

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/release"
)

const mailcowUpdateUsage = "mailcow update --to TAG [--commit SHA] [--within 30m] [--config PATH]"

// memberRelease is what one data member said of its mailcow release.
type memberRelease struct {
	m   config.Member
	st  api.ReleaseState
	err error
}

// releases asks the data members for their mailcow release (every one when only is nil, else those named in it).
func (s memberSession) releases(ctx context.Context, only map[string]bool) []memberRelease {
	var out []memberRelease
	for _, m := range s.cfg.DataMembers() {
		if only != nil && !only[m.Name] {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := s.peers.MailcowRelease(qctx, s.peer(m))
		cancel()
		out = append(out, memberRelease{m, st, err})
	}
	return out
}

// mailcowUpdate stages release TAG on every data member, then switches the MASTER to it, then the others. It is
// safe to run again: a member that staged or runs TAG already is not asked again.
func mailcowUpdate(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("mailcow update", mailcowUpdateUsage, stdio)
	src := sourceFlags(fs)
	to := fs.String("to", "", "the release's tag in mailcow.repo, such as 2026-09 (required)")
	commit := fs.String("commit", "", "the commit the tag must name (40 hex digits): a tag moved upstream is refused")
	within := fs.Duration("within", 30*time.Minute, "how long the stage (clone and image pull on every node) may take")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha mailcow update: "+format+"\n", a...)
		return code
	}
	if err := release.CheckTag(*to); err != nil {
		return fail(ExitUsage, "--to: %v", err)
	}
	if *commit != "" && !isHex40(*commit) {
		return fail(ExitUsage, "--commit: %q is not 40 hex digits", *commit)
	}
	src.Stdin = stdio.Stdin
	sess, code, err := openSession(ctx, *src)
	if err != nil {
		return fail(code, "%v", err)
	}
	w := stdio.Stdout
	begin := time.Now()

	// 1. Stage on every data member that answers, BACKUPs included, while mail flows. One that does not answer (off,
	// or being rebuilt) catches up by itself when it is back: it then holds another release than every other.
	var rels []memberRelease
	reached := map[string]bool{}
	for _, r := range sess.releases(ctx, nil) {
		if r.err != nil {
			fmt.Fprintf(w, "%s: not reached (%v); it takes the release by itself when it is back\n", r.m.Name, r.err)
			continue
		}
		rels, reached[r.m.Name] = append(rels, r), true
	}
	if len(rels) == 0 {
		return fail(ExitFailure, "no member answered")
	}
	for _, r := range rels {
		if r.st.Current.Tag == *to || (r.st.Staged.Tag == *to && r.st.Staging == "") {
			continue
		}
		if err := sess.peers.StageRelease(ctx, sess.peer(r.m), *to, *commit); err != nil {
			return fail(ExitFailure, "%s: %v", r.m.Name, err)
		}
		fmt.Fprintf(w, "%s: staging %s\n", r.m.Name, *to)
	}
	staged, err := sess.waitStaged(ctx, *to, reached, *within)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	if *commit != "" && staged.Commit != *commit {
		return fail(ExitFailure, "%s is at commit %s, and --commit %s was asked for", *to, staged.Commit, *commit)
	}
	fmt.Fprintf(w, "staged %s on %d nodes in %s\n", staged, len(rels), time.Since(begin).Round(100*time.Millisecond))

	// 2. The MASTER first, in place; 3. then the others' trees.
	master, err := sess.master(ctx)
	if err != nil {
		return fail(ExitFailure, "%v", err)
	}
	if !reached[master.Name] {
		return fail(ExitFailure, "the MASTER %s did not answer the release question: nothing switched", master.Name)
	}
	order := []config.Member{master}
	for _, r := range rels {
		if r.m.Name != master.Name {
			order = append(order, r.m)
		}
	}
	for _, m := range order {
		t0 := time.Now()
		ans, err := sess.peers.SwitchRelease(ctx, sess.peer(m), *to)
		if err == nil && ans.Error != "" {
			err = errors.New(ans.Error)
		}
		if err != nil {
			if m.Name == master.Name {
				return fail(ExitFailure, "the MASTER %s: %v (the other nodes keep their release)", m.Name, err)
			}
			return fail(ExitFailure, "%s: %v", m.Name, err)
		}
		how := "laid over its tree"
		switch {
		case ans.Before == ans.Now:
			how = "runs it already"
		case ans.Started:
			how = "mailcow restarted on it, healthy"
		}
		fmt.Fprintf(w, "%s: %s -> %s: %s in %s\n", m.Name, ans.Before, ans.Now, how, time.Since(t0).Round(100*time.Millisecond))
	}
	if n := len(sess.cfg.DataMembers()) - len(rels); n > 0 {
		fmt.Fprintf(w, "every node reached runs %s (%s); %d not reached take it when they are back\n", staged, time.Since(begin).Round(100*time.Millisecond), n)
		return ExitOK
	}
	fmt.Fprintf(w, "every node runs %s (%s)\n", staged, time.Since(begin).Round(100*time.Millisecond))
	return ExitOK
}

// waitStaged waits until every data member named in members has staged tag, and returns the release they staged
// (all the same commit).
func (s memberSession) waitStaged(ctx context.Context, tag string, members map[string]bool, within time.Duration) (release.Release, error) {
	deadline := time.Now().Add(within)
	for {
		var pending []string
		var got release.Release
		for _, r := range s.releases(ctx, members) {
			have := r.st.Staged
			if r.st.Current.Tag == tag && r.st.Staged.Tag != tag {
				have = r.st.Current
			}
			switch {
			case r.err != nil:
				pending = append(pending, r.m.Name+" (not answering)")
			case r.st.Staging != "":
				pending = append(pending, r.m.Name)
			case have.Tag != tag && r.st.Error != "":
				return got, fmt.Errorf("%s: %s", r.m.Name, r.st.Error)
			case have.Tag != tag:
				pending = append(pending, r.m.Name+" (not staging)")
			case got.Commit != "" && have.Commit != got.Commit:
				return got, fmt.Errorf("%s named commit %s on one node and %s on %s", tag, got.Commit, have.Commit, r.m.Name)
			default:
				got = have
			}
		}
		if len(pending) == 0 {
			return got, nil
		}
		if time.Now().After(deadline) {
			return got, fmt.Errorf("not staged within %s: %s", within, strings.Join(pending, ", "))
		}
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// master is the member that serves as MASTER, settled.
func (s memberSession) master(ctx context.Context) (config.Member, error) {
	for _, r := range s.revisions(ctx) {
		if r.err == nil && r.st.Role == string(failover.RoleMaster) {
			return r.m, nil
		}
	}
	return config.Member{}, errors.New("no member is MASTER: the update waits for a cluster that serves")
}

// mailcowRelease prints the mailcow release each data member runs and the one it staged.
func mailcowRelease(ctx context.Context, args []string, stdio Stdio) int {
	sess, code, ok := listSession(ctx, "mailcow release", args, stdio)
	if !ok {
		return code
	}
	tw := tabwriter.NewWriter(stdio.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRELEASE\tSTAGED\tSTAGING")
	for _, r := range sess.releases(ctx, nil) {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\t?\t?\t(%v)\n", r.m.Name, r.err)
			continue
		}
		staging := orDash(r.st.Staging)
		if r.st.Error != "" {
			staging = "failed: " + r.st.Error
		}
		staged := "-"
		if r.st.Staged.Tag != "" {
			staged = r.st.Staged.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.m.Name, r.st.Current, staged, staging)
	}
	tw.Flush()
	return ExitOK
}

func isHex40(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
