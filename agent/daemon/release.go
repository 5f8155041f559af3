package daemon

// mailcow's release on this node (`mailcow-ha mailcow update`, over the peer API): a release is staged in the
// background while the node serves, and a switch to it is made when asked: a MASTER lays it over its tree and
// restarts what changed in maintenance, any other node only lays it over its tree.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/release"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
	"github.com/mailcow-ha/mailcow-ha/agent/stack"
)

// releaseWork is the stage or switches under way, under relMu (the switches themselves take turns on relSwitch).
type releaseWork struct {
	staging  string // the tag being staged
	stageErr string // why the last stage failed
	switches int    // switches asked for and not done
}

func (a *Agent) tree() release.Tree {
	a.mu.Lock()
	defer a.mu.Unlock()
	return release.Tree{Dir: a.c.Mailcow.Dir}
}

// ReleaseState implements the peer API's release question.
func (a *Agent) ReleaseState() api.ReleaseState {
	t := a.tree()
	cur, err1 := t.Current()
	staged, err2 := t.Staged()
	a.relMu.Lock()
	defer a.relMu.Unlock()
	s := api.ReleaseState{Current: cur, Staged: staged, Staging: a.rel.staging, Error: a.rel.stageErr}
	if err := errors.Join(err1, err2); err != nil && s.Error == "" {
		s.Error = err.Error()
	}
	return s
}

// mailcowRelease is the release the tree holds, for the peer state ("" when it records none).
func (a *Agent) mailcowRelease() string {
	r, err := a.tree().Current()
	if err != nil || r.Tag == "" {
		return ""
	}
	return r.String()
}

// StageRelease implements the peer API's stage request: the stage runs in the background (a pull may take
// minutes); ReleaseState follows it. The same tag asked again while it is staged is no new work.
func (a *Agent) StageRelease(tag, commit string) error {
	if err := release.CheckTag(tag); err != nil {
		return err
	}
	a.relMu.Lock()
	defer a.relMu.Unlock()
	switch {
	case a.rel.staging == tag:
		return nil
	case a.rel.staging != "":
		return fmt.Errorf("staging %s is under way", a.rel.staging)
	case a.rel.switches > 0:
		return errors.New("a switch of the release is under way")
	}
	a.rel.staging, a.rel.stageErr = tag, ""
	a.mu.Lock()
	m := a.c.Mailcow
	a.mu.Unlock()
	s := release.Stager{Tree: release.Tree{Dir: m.Dir}, Repo: m.Repo, Pull: m.PullCommand, Log: a.log.With("component", "release")}
	if m.UsesCompose() || len(m.PullCommand) > 0 {
		s.Missing = func(ctx context.Context, dir string) ([]string, error) {
			dc, err := client.NewClientWithOpts(client.WithHost(m.DockerHost), client.WithAPIVersionNegotiation())
			if err != nil {
				return nil, err
			}
			defer dc.Close()
			return stack.MissingImages(ctx, dc, dir)
		}
	}
	a.tasks.Add(1)
	go func() {
		defer a.tasks.Done()
		begin := time.Now()
		r, err := s.Stage(a.bg, tag, commit)
		a.relMu.Lock()
		a.rel.staging = ""
		if err != nil {
			a.rel.stageErr = err.Error()
		}
		a.relMu.Unlock()
		if err != nil {
			a.alert(event.MailcowStageFailed, report.SeverityWarning, "", 0, "mailcow release "+tag+" not staged: "+err.Error(), map[string]string{"tag": tag})
			return
		}
		a.alert(event.MailcowStaged, report.SeverityInfo, "", 0,
			fmt.Sprintf("mailcow release %s staged in %s", r, time.Since(begin).Round(time.Millisecond)),
			map[string]string{"tag": r.Tag, "commit": r.Commit})
	}()
	return nil
}

// SwitchRelease implements the peer API's switch: this node runs the staged release tag. A MASTER pauses its
// automatic actions (maintenance), lays the release over its tree and starts mailcow again, which creates anew only
// the containers whose definition changed; it waits for the critical services, and when they do not come back
// within mailcow.start_timeout it takes the tree back and starts the release before. Another node lays the
// release over its tree: it starts it at its next takeover.
func (a *Agent) SwitchRelease(ctx context.Context, tag string) api.SwitchAnswer {
	a.relMu.Lock()
	staging := a.rel.staging
	if staging == "" {
		a.rel.switches++
	}
	a.relMu.Unlock()
	if staging != "" {
		return api.SwitchAnswer{Error: "staging " + staging + " is under way"}
	}
	defer func() { a.relMu.Lock(); a.rel.switches--; a.relMu.Unlock() }()
	// One switch at a time (the command's and this node's own catch-up): the second finds the tree switched.
	a.relSwitch.Lock()
	defer a.relSwitch.Unlock()

	a.mu.Lock()
	s, timeout := a.s, a.c.Mailcow.StartTimeout.D()
	a.mu.Unlock()
	t := a.tree()
	switch {
	case s.Role == failover.RoleMaster && s.Phase == failover.PhaseNone:
	case s.Role == failover.RoleBackup || s.Role == failover.RoleFault:
		before, err := t.Switch(tag)
		if err != nil {
			return api.SwitchAnswer{Before: before, Now: before, Error: err.Error()}
		}
		now, _ := t.Current()
		if now != before {
			a.alert(event.MailcowUpdated, report.SeverityInfo, "", 0, fmt.Sprintf("mailcow release %s laid over the tree (was %s); it starts at this node's next takeover", now, before),
				map[string]string{"tag": now.Tag, "commit": now.Commit, "before": before.Tag})
		}
		return api.SwitchAnswer{Before: before, Now: now}
	default:
		return api.SwitchAnswer{Error: fmt.Sprintf("the node is %s (phase %q): a release switches on a settled node", s.Role, s.Phase)}
	}

	staged, err := t.Staged()
	if err != nil || staged.Tag != tag {
		cur, _ := t.Current()
		return api.SwitchAnswer{Before: cur, Now: cur, Error: fmt.Sprintf("%s is not staged here (staged: %s; %v)", tag, staged, err)}
	}
	if cur, _ := t.Current(); cur == staged {
		return api.SwitchAnswer{Before: cur, Now: cur}
	}
	defer a.switchMaintenance(s)()
	// The switch goes on when the asker goes away (a command interrupted): a stack half started, or a tree half
	// taken back, is worse than either release.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*timeout+5*time.Minute)
	defer cancel()
	begin := time.Now()
	before, err := t.Switch(tag)
	if err == nil {
		err = a.startRelease(ctx, timeout)
	}
	if err == nil {
		now, _ := t.Current()
		a.alert(event.MailcowUpdated, report.SeverityInfo, "", 0,
			fmt.Sprintf("mailcow runs release %s (was %s): healthy %s after the switch", now, before, time.Since(begin).Round(time.Millisecond)),
			map[string]string{"tag": now.Tag, "commit": now.Commit, "before": before.Tag})
		return api.SwitchAnswer{Before: before, Now: now, Started: true}
	}
	why := err.Error()
	if _, rerr := t.Revert(); rerr != nil {
		why += "; taking the tree back failed: " + rerr.Error()
	} else if serr := a.startRelease(ctx, timeout); serr != nil {
		why += "; the release before did not come back either: " + serr.Error()
	}
	now, _ := t.Current()
	a.alert(event.MailcowUpdateFailed, report.SeverityCritical, "", 0,
		fmt.Sprintf("mailcow release %s did not come up: %s; the tree holds %s again", tag, why, now),
		map[string]string{"tag": tag, "before": before.Tag})
	return api.SwitchAnswer{Before: before, Now: now, Error: why}
}

// followRelease brings this node's tree to the release every other data member holds, when it alone holds
// another (catchUpRelease), first 2 s after the start, then every 10 s (a rolling upgrade waits for it).
func (a *Agent) followRelease(ctx context.Context) {
	every(ctx, 2*time.Second, 10*time.Second, func() bool { a.catchUpRelease(ctx); return false })
}

// catchUpRelease stages and then switches to the release that every other data member's tree holds, on a BACKUP
// (or a FAULT node) whose tree holds another: a node rebuilt or added from an image with an older release, or one that was off
// during mailcow update. Every member must answer and agree: a MASTER alone on another release (a node of an
// old image that took over) is not followed, and a cluster half-way through mailcow update is left to it.
func (a *Agent) catchUpRelease(ctx context.Context) {
	a.mu.Lock()
	role := a.s.Role
	a.mu.Unlock()
	a.relMu.Lock()
	busy := a.rel.staging != "" || a.rel.switches > 0
	a.relMu.Unlock()
	// A BACKUP, or a node still in FAULT while its Galera member joins: its stack does not run, so the catch-up
	// goes on beside the join (a rolling upgrade waits for both).
	if (role != failover.RoleBackup && role != failover.RoleFault) || busy {
		return
	}
	t := a.tree()
	mine, err := t.Current()
	if err != nil {
		return
	}
	var theirs release.Release
	n := 0
	for _, p := range a.peerAPI() {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := a.client.MailcowRelease(qctx, p)
		cancel()
		if err != nil || st.Current.Tag == "" || (n > 0 && st.Current != theirs) {
			return
		}
		theirs, n = st.Current, n+1
	}
	if n == 0 || theirs == mine {
		return
	}
	if staged, _ := t.Staged(); staged != theirs {
		a.log.Info("mailcow release: every other member holds "+theirs.String()+", this node "+mine.String()+"; staging it",
			"release", theirs.String(), "own", mine.String())
		if err := a.StageRelease(theirs.Tag, theirs.Commit); err != nil {
			a.log.Warn("mailcow release: catching up", "err", err)
			return
		}
		for a.ReleaseState().Staging != "" {
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		if staged, _ := t.Staged(); staged != theirs {
			return // the stage failed, and said why (mailcow_stage_failed); the next round tries again
		}
	}
	if ans := a.SwitchRelease(ctx, theirs.Tag); ans.Error != "" {
		a.log.Warn("mailcow release: catching up", "err", ans.Error)
	}
}

// treeGuard is the executor's stack: its start waits for a switch of the release under way (relSwitch).
type treeGuard struct {
	Stack
	mu *sync.Mutex
}

func (g treeGuard) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Stack.Start(ctx)
}

// Warm passes the warm start through, when the stack below has one; like the start, it waits for a switch of the
// release under way.
func (g treeGuard) Warm(ctx context.Context) error {
	w, ok := g.Stack.(stackWarmer)
	if !ok {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return w.Warm(ctx)
}

// Running passes the count of running containers through, when the stack below can count them.
func (g treeGuard) Running(ctx context.Context) (int, error) {
	if r, ok := g.Stack.(stackRunning); ok {
		return r.Running(ctx)
	}
	return 0, nil
}

// switchMaintenance puts a node whose state is s into maintenance for a switch of its stack (a release's, a
// migration's), unless an operator already has, and returns what ends it: the brain then fails over for no service
// the switch stops itself.
func (a *Agent) switchMaintenance(s failover.State) (end func()) {
	if s.Maintenance {
		return func() {}
	}
	a.observe(failover.Maintenance{On: true})
	a.waitMaintenance(2 * time.Second)
	return func() { a.observe(failover.Maintenance{On: false}) }
}

// waitMaintenance waits until the brain has taken maintenance in (the observation goes through the loop), at
// most d.
func (a *Agent) waitMaintenance(d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		a.mu.Lock()
		on := a.s.Maintenance
		a.mu.Unlock()
		if on {
			return
		}
	}
}

// startRelease starts mailcow on the tree as it is now (the stack creates anew the containers whose definition
// changed) and waits until every critical service is up, timeout from the start (the stack's own start waits as
// long).
func (a *Agent) startRelease(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := a.o.Stack.Start(ctx); err != nil { // below the tree guard: the switch holds it
		return err
	}
	for {
		failed, err := a.o.Stack.Failed(ctx)
		switch {
		case err == nil && failed == "":
			return nil
		case !time.Now().Before(deadline):
			if err != nil {
				return err
			}
			return fmt.Errorf("%s is down %s after the start", failed, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
