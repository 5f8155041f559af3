package daemon

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/migrate"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

// SwitchMigration implements the peer API's migration switch (`mailcow-ha migrate --final`): on a settled MASTER,
// in maintenance (no failover for a stack it stops itself), mailcow stops, the old server's database and
// directories staged on the Volume become the cluster's (migrate.Switch), and mailcow starts on them.
func (a *Agent) SwitchMigration(ctx context.Context) api.MigrateAnswer {
	// One stack switch at a time: a release's and a migration's.
	a.relSwitch.Lock()
	defer a.relSwitch.Unlock()
	a.mu.Lock()
	s, timeout := a.s, a.c.Mailcow.StartTimeout.D()
	mount, socket := a.c.Mailcow.DataMount, a.c.Galera.Socket
	a.mu.Unlock()
	if s.Role != failover.RoleMaster || s.Phase != failover.PhaseNone {
		return api.MigrateAnswer{Error: fmt.Sprintf("the node is %s (phase %q): a migration switches on the settled MASTER", s.Role, s.Phase)}
	}
	defer a.switchMaintenance(s)()
	// Like a release's switch, it goes on when the asker goes away: a stack stopped halfway is worse than either.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*timeout+30*time.Minute)
	defer cancel()
	begin := time.Now()
	var ans api.MigrateAnswer
	err := a.o.Stack.Stop(ctx)
	if err == nil {
		var sw migrate.Switched
		sw, err = migrate.Switch(ctx, mount, socket, "mailcow")
		ans = api.MigrateAnswer{From: sw.From.Host, Dirs: sw.Dirs, Replaced: sw.Replaced, ImportMS: sw.Import.Milliseconds()}
	}
	// mailcow starts again either way: on the old server's state, or (a failed switch) on what the Volume held.
	serr := a.startRelease(ctx, timeout)
	ans.Started = serr == nil
	if err == nil && serr != nil {
		err = fmt.Errorf("mailcow after the switch: %w", serr)
	}
	if err != nil {
		ans.Error = err.Error()
		a.alert(event.MigrateFailed, report.SeverityCritical, "", 0, "migration from "+orUnknown(ans.From)+" failed: "+ans.Error,
			map[string]string{"from": ans.From})
		return ans
	}
	a.alert(event.Migrated, report.SeverityInfo, "", 0,
		fmt.Sprintf("mailcow runs on the state of %s (%s; the database imported in %s), healthy %s after the switch; the Volume's directories before it are in %s",
			ans.From, strings.Join(ans.Dirs, ", "), time.Duration(ans.ImportMS)*time.Millisecond, time.Since(begin).Round(time.Millisecond), ans.Replaced),
		map[string]string{"from": ans.From, "replaced": ans.Replaced})
	return ans
}

// orUnknown names an old server that the stage did not say.
func orUnknown(host string) string {
	if host == "" {
		return "the staged server"
	}
	return host
}
