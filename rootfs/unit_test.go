package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unit = "usr/lib/systemd/system/mailcow-ha.service"

// unitKeys reads a unit file into section.key → values.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			out[section+"."+k] = append(out[section+"."+k], strings.Fields(v)...)
		}
	}
	return out
}

func has(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// The agent's unit is what issue and design ask for: Type=notify with a watchdog, restarts on failure (not on a
// configuration error), ordered after cloud-config but never after cloud-final while multi-user.target wants it.
func TestAgentUnit(t *testing.T) {
	k := unitKeys(t, unit)
	for key, want := range map[string]string{
		"Service.Type": "notify", "Service.Restart": "on-failure", "Service.RestartPreventExitStatus": "2", "Service.RestartForceExitStatus": "75",
		"Service.KillMode": "mixed", "Install.WantedBy": "multi-user.target", "Service.NotifyAccess": "main",
		"Unit.After": "cloud-config.target", "Unit.Wants": "cloud-config.target",
	} {
		if !has(k[key], want) {
			t.Errorf("%s: want %s, got %v", key, want, k[key])
		}
	}
	if u := k["Service.UMask"]; len(u) != 1 || u[0] != "0022" {
		t.Errorf("UMask %v: 0022, or mariadbd (user mysql) cannot read the rendered Galera drop-in", u)
	}
	if len(k["Service.WatchdogSec"]) != 1 {
		t.Errorf("no WatchdogSec")
	}
	for _, key := range []string{"Unit.After", "Unit.Wants", "Unit.Requires", "Unit.BindsTo"} {
		if has(k[key], "cloud-final.service") {
			t.Errorf("%s names cloud-final.service: a cycle with multi-user.target on Debian", key)
		}
	}
	if es := strings.Join(k["Service.ExecStart"], " "); !strings.Contains(es, "agent --galera systemd") ||
		strings.Contains(es, "token") || strings.Contains(es, "secret") {
		t.Errorf("ExecStart %q: the agent with systemd's mariadb, and no secret in its arguments", es)
	}
}

// systemd itself accepts the units.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd)")
	}
	units, _ := filepath.Glob("usr/lib/systemd/system/*.service")
	timers, _ := filepath.Glob("usr/lib/systemd/system/*.timer")
	units = append(units, timers...)
	if len(units) < 2 || len(timers) == 0 {
		t.Fatalf("units: %v", units)
	}
	// One directory with every unit: a timer is verified with the service it starts beside it.
	dir := t.TempDir()
	for _, u := range units {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		// The binaries are not installed here: point ExecStart at one that exists, everything else as shipped.
		s := strings.NewReplacer("/usr/local/bin/mailcow-ha", "/bin/true", "/usr/local/bin/mailcow-signup", "/bin/true").Replace(string(b))
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(u)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		path := filepath.Join(dir, filepath.Base(u))
		out, err := exec.Command(sa, "verify", path).CombinedOutput()
		var ours []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, filepath.Base(u)) {
				ours = append(ours, line)
			}
		}
		if len(ours) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, strings.Join(ours, "\n"))
		}
	}
}

// The backup's timers start their services, and the services run `backup run` (which copies what the node's role
// copies, and nothing while no repository is set) and `backup prune` (the retention, on the MASTER).
func TestBackupTimer(t *testing.T) {
	for unit, cmd := range map[string]string{"mailcow-ha-backup": "backup run", "mailcow-ha-backup-prune": "backup prune"} {
		tm := unitKeys(t, "usr/lib/systemd/system/"+unit+".timer")
		if len(tm["Timer.OnCalendar"]) == 0 || !has(tm["Install.WantedBy"], "timers.target") || !has(tm["Timer.Persistent"], "true") {
			t.Errorf("%s.timer: %v", unit, tm)
		}
		sv := unitKeys(t, "usr/lib/systemd/system/"+unit+".service")
		if es := strings.Join(sv["Service.ExecStart"], " "); es != "/usr/local/bin/mailcow-ha "+cmd || !has(sv["Service.Type"], "oneshot") {
			t.Errorf("%s.service: ExecStart %q, Type %v", unit, es, sv["Service.Type"])
		}
	}
}
