package report

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"github.com/mailcow-ha/mailcow-ha/agent/child"
)

// listen opens a unixgram socket in a temporary directory, as journald or systemd would.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, path
}

// entries records what the handler would hand to journal.Send.
type entries struct{ got []map[string]string }

func (e *entries) send(message string, prio journal.Priority, vars map[string]string) error {
	f := maps.Clone(vars)
	f["MESSAGE"], f["PRIORITY"] = message, strconv.Itoa(int(prio))
	e.got = append(e.got, f)
	return nil
}

func (e *entries) last(t *testing.T) map[string]string {
	t.Helper()
	if len(e.got) == 0 {
		t.Fatal("no entry sent")
	}
	return e.got[len(e.got)-1]
}

func TestJournalHandler(t *testing.T) {
	var sent entries
	var stderr bytes.Buffer
	log := NewLogger(LogOptions{Stderr: &stderr, IsJournalStream: func() (bool, error) { return true, nil }, Send: sent.send,
		Level: slog.LevelDebug})
	if _, ok := log.Handler().(*JournalHandler); !ok {
		t.Fatalf("handler = %T, want the journal", log.Handler())
	}
	log = log.With("node", "mx1")
	log.Warn("promoted to MASTER", "message_id", "3f1b9c1e0d6a4c3e9a7b2c1d0e5f6a7b", "transition_id", "t-42",
		"phase_ms", 1234, slog.Group("peer", "name", "mx2", "server_id", 1002), "err", errors.New("line one\nline two"),
		"syslog_identifier", "forged", "priority", "0")
	f := sent.last(t)
	want := map[string]string{
		// The attributes follow the message as key=value (plain journalctl shows MESSAGE only); message_id not.
		"MESSAGE":           `promoted to MASTER transition_id=t-42 phase_ms=1234 peer.name=mx2 peer.server_id=1002 err="line one\nline two" syslog_identifier=forged priority=0`,
		"PRIORITY":          "4",
		"SYSLOG_IDENTIFIER": "mailcow-ha",
		"NODE":              "mx1",
		"MESSAGE_ID":        "3f1b9c1e0d6a4c3e9a7b2c1d0e5f6a7b",
		"TRANSITION_ID":     "t-42",
		"PHASE_MS":          "1234",
		"PEER_NAME":         "mx2",
		"PEER_SERVER_ID":    "1002",
		"ERR":               "line one\nline two",
	}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("%s = %q, want %q", k, f[k], v)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q", stderr.String())
	}

	log.WithGroup("galera").Error("degraded", "state", "Donor/Desynced", "cluster-size", 2)
	f = sent.last(t)
	if f["PRIORITY"] != "3" || f["GALERA_STATE"] != "Donor/Desynced" || f["GALERA_CLUSTER_SIZE"] != "2" || f["NODE"] != "mx1" {
		t.Errorf("group fields: %v", f)
	}
	log.Debug("look")
	if f = sent.last(t); f["PRIORITY"] != "7" || f["MESSAGE"] != "look" {
		t.Errorf("debug: %v", f)
	}
}

// Text on stderr when stderr is not the journal's stream, or when it is but the journal's socket is not there.
func TestLoggerFallsBackToText(t *testing.T) {
	for name, stream := range map[string]func() (bool, error){
		"not the journal's stream": func() (bool, error) { return false, nil },
		"no JOURNAL_STREAM":        nil, // go-systemd's own check, in this test process
	} {
		var stderr bytes.Buffer
		log := NewLogger(LogOptions{Stderr: &stderr, IsJournalStream: stream})
		log.Info("hello", "transition_id", "t-1")
		if !strings.Contains(stderr.String(), "msg=hello transition_id=t-1") {
			t.Errorf("%s: stderr = %q", name, stderr.String())
		}
	}
	// The process's stderr named in JOURNAL_STREAM, and no journal socket on this machine: text.
	if _, err := os.Stat("/run/systemd/journal/socket"); err == nil {
		t.Log("this machine has a journal; the no-socket case is left out")
		return
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	var stderr bytes.Buffer
	log := NewLogger(LogOptions{Stderr: &stderr})
	log.Info("hello")
	if !strings.Contains(stderr.String(), "msg=hello") {
		t.Errorf("no journal socket: stderr = %q", stderr.String())
	}
}

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{"transition_id": "TRANSITION_ID", "hcloud.action-id": "HCLOUD_ACTION_ID", "_x": "X", "1a": "A", "": ""} {
		if got := fieldName(in); got != want {
			t.Errorf("fieldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNotifier(t *testing.T) {
	conn, path := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := NotifierFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	// The agent keeps systemd's variables; the commands it runs do not get them.
	if out, err := child.Command(t.Context(), "env").Output(); err != nil || strings.Contains(string(out), "NOTIFY_SOCKET") ||
		strings.Contains(string(out), "WATCHDOG_") {
		t.Errorf("a child's environment: %v\n%s", err, out)
	}
	read := func() map[string]string {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, l := range strings.Split(string(buf[:k]), "\n") {
			key, val, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("not KEY=VALUE: %q", l)
			}
			out[key] = val
		}
		return out
	}
	check := func(sent bool, err error, want map[string]string) {
		t.Helper()
		if !sent || err != nil {
			t.Fatalf("sent=%v err=%v", sent, err)
		}
		got := read()
		if len(got) != len(want) {
			t.Errorf("got %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
	}
	sent, err := n.Ready("BACKUP, galera Synced")
	check(sent, err, map[string]string{"READY": "1", "STATUS": "BACKUP, galera Synced"})
	sent, err = n.Status("MASTER\nsince 12:00")
	check(sent, err, map[string]string{"STATUS": "MASTER since 12:00"})
	sent, err = n.Watchdog()
	check(sent, err, map[string]string{"WATCHDOG": "1"})
	sent, err = n.ExtendTimeout(90 * time.Second)
	check(sent, err, map[string]string{"EXTEND_TIMEOUT_USEC": "90000000"})
	sent, err = n.Stopping("demoting")
	check(sent, err, map[string]string{"STOPPING": "1", "STATUS": "demoting"})

	// A bad watchdog value is an error that names it.
	t.Setenv("WATCHDOG_USEC", "soon")
	t.Setenv("WATCHDOG_PID", "")
	if _, err := NotifierFromEnv(); err == nil || !strings.Contains(err.Error(), "WATCHDOG_USEC") {
		t.Errorf("bad WATCHDOG_USEC: %v", err)
	}
	// Outside systemd nothing is sent, even with a socket in the environment.
	var none Notifier
	if sent, err := none.Ready("x"); sent || err != nil {
		t.Errorf("outside systemd: sent=%v err=%v", sent, err)
	}
	// A socket that went away is an error, not a silent loss.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	if sent, err := n.Status("x"); sent || err == nil {
		t.Errorf("missing socket: sent=%v err=%v", sent, err)
	}
}
