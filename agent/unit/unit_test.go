package unit

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// fakeManager answers as systemd's org.freedesktop.systemd1.Manager would: a start or stop returns a job's path at
// once and announces the job's result later with the JobRemoved signal; each unit's ActiveState is a property.
type fakeManager struct {
	conn *dbus.Conn

	mu     sync.Mutex
	next   uint32
	active map[string]bool
	fail   map[string]bool // start jobs of these units end "failed"
	calls  []string
}

func (f *fakeManager) job(name, verb string) (dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	id := f.next
	path := dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
	f.calls = append(f.calls, verb+" "+name)
	result := "done"
	switch {
	case verb == "start" && f.fail[name]:
		result = "failed"
	default:
		f.active[name] = verb == "start"
	}
	go func() {
		time.Sleep(50 * time.Millisecond) // the job runs
		f.conn.Emit("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager.JobRemoved", id, path, name, result)
	}()
	return path, nil
}

func (f *fakeManager) StartUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return f.job(name, "start")
}
func (f *fakeManager) StopUnit(name, mode string) (dbus.ObjectPath, *dbus.Error) {
	return f.job(name, "stop")
}

func (f *fakeManager) KillUnit(name, who string, signal int32) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("kill %s %s %d", name, who, signal))
	if signal == 9 {
		f.active[name] = false
	}
	return nil
}

// unitProps is one unit's org.freedesktop.DBus.Properties.
type unitProps struct {
	f    *fakeManager
	name string
}

func (u unitProps) Get(iface, prop string) (dbus.Variant, *dbus.Error) {
	if iface != "org.freedesktop.systemd1.Unit" || prop != "ActiveState" {
		return dbus.Variant{}, dbus.MakeFailedError(fmt.Errorf("no property %s.%s", iface, prop))
	}
	u.f.mu.Lock()
	defer u.f.mu.Unlock()
	if u.f.active[u.name] {
		return dbus.MakeVariant("active"), nil
	}
	return dbus.MakeVariant("inactive"), nil
}

// TestSystemd drives go-systemd's client, through a real dbus-daemon, against a stand-in for systemd's manager
// (no systemd runs on this machine; the VM tests start the real mariadb.service this way).
func TestSystemd(t *testing.T) {
	addr := privateBus(t)
	srv := dial(t, addr)
	defer srv.Close()
	f := &fakeManager{conn: srv, active: map[string]bool{}, fail: map[string]bool{"bad.service": true}}
	if err := srv.Export(f, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mariadb.service", "bad.service"} {
		if err := srv.Export(unitProps{f, name}, dbus.ObjectPath("/org/freedesktop/systemd1/unit/"+sddbus.PathBusEscape(name)),
			"org.freedesktop.DBus.Properties"); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := srv.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("request name: %v %v", r, err)
	}

	s := &Systemd{Dial: func(context.Context) (*sddbus.Conn, error) {
		return sddbus.NewConnection(func() (*dbus.Conn, error) { return dial(t, addr), nil })
	}}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	if err := s.Start(ctx, "mariadb.service"); err != nil {
		t.Fatal(err)
	}
	if on, err := s.Active(ctx, "mariadb.service"); !on || err != nil {
		t.Fatalf("after start: active=%v %v", on, err)
	}
	// A job that fails is an error that says so, and names the unit.
	err := s.Start(ctx, "bad.service")
	if err == nil || !strings.Contains(err.Error(), `the job ended "failed"`) || !strings.Contains(err.Error(), "bad.service") {
		t.Fatalf("a failed start: %v", err)
	}
	if err := s.Stop(ctx, "mariadb.service"); err != nil {
		t.Fatal(err)
	}
	if on, err := s.Active(ctx, "mariadb.service"); on || err != nil {
		t.Fatalf("after stop: active=%v %v", on, err)
	}
	// Kill sends SIGKILL to every process of the unit.
	if err := s.Start(ctx, "mariadb.service"); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(ctx, "mariadb.service"); err != nil {
		t.Fatal(err)
	}
	if on, err := s.Active(ctx, "mariadb.service"); on || err != nil {
		t.Fatalf("after kill: active=%v %v", on, err)
	}
	// A unit systemd does not answer for is an error, not "inactive".
	if _, err := s.Active(ctx, "none.service"); err == nil {
		t.Fatal("no error for a unit without an object")
	}
	// A job whose result never comes ends with the caller's context.
	short, stop := context.WithTimeout(ctx, 10*time.Millisecond)
	defer stop()
	if err := s.Start(short, "mariadb.service"); err == nil {
		t.Fatal("a start outlived its context")
	}
	f.mu.Lock()
	calls := strings.Join(f.calls, "|")
	f.mu.Unlock()
	if !strings.HasPrefix(calls, "start mariadb.service|start bad.service|stop mariadb.service|start mariadb.service|kill mariadb.service all 9") {
		t.Fatalf("calls: %s", calls)
	}
}
