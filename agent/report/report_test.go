package report

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// readEntry reads one datagram, following a passed file descriptor as journald does.
func readEntry(t *testing.T, c *net.UnixConn) map[string]string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<20)
	oob := make([]byte, 64)
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	data := buf[:n]
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Fatalf("control message: %v", err)
		}
		fds, err := syscall.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Fatalf("rights: %v", err)
		}
		f := os.NewFile(uintptr(fds[0]), "memfd")
		defer f.Close()
		f.Seek(0, io.SeekStart)
		if data, err = io.ReadAll(f); err != nil {
			t.Fatal(err)
		}
	}
	fields, err := ParseJournalEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

func TestJournalHandler(t *testing.T) {
	conn, path := listen(t)
	env := map[string]string{"JOURNAL_STREAM": "8:1234"}
	var stderr bytes.Buffer
	log := NewLogger(LogOptions{Stderr: &stderr, JournalSocket: path, Getenv: func(k string) string { return env[k] }, Level: slog.LevelDebug})
	if _, ok := log.Handler().(*JournalHandler); !ok {
		t.Fatalf("handler = %T, want the journal", log.Handler())
	}
	log = log.With("node", "mx1")
	log.Warn("promoted to MASTER", "message_id", "3f1b9c1e0d6a4c3e9a7b2c1d0e5f6a7b", "transition_id", "t-42",
		"phase_ms", 1234, slog.Group("peer", "name", "mx2", "server_id", 1002), "err", errors.New("line one\nline two"))
	f := readEntry(t, conn)
	want := map[string]string{
		// The attributes follow the message as key=value (plain journalctl shows MESSAGE only); message_id not.
		"MESSAGE":           `promoted to MASTER transition_id=t-42 phase_ms=1234 peer.name=mx2 peer.server_id=1002 err="line one\nline two"`,
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
	f = readEntry(t, conn)
	if f["PRIORITY"] != "3" || f["GALERA_STATE"] != "Donor/Desynced" || f["GALERA_CLUSTER_SIZE"] != "2" || f["NODE"] != "mx1" {
		t.Errorf("group fields: %v", f)
	}

	// An entry larger than a datagram goes through a passed file descriptor.
	big := strings.Repeat("x", 1<<20-4096)
	log.Info(big, "n", 1)
	f = readEntry(t, conn)
	if f["MESSAGE"] != big+" n=1" || f["N"] != "1" {
		t.Errorf("large entry: message of %d bytes, N=%q", len(f["MESSAGE"]), f["N"])
	}
}

func TestLoggerFallsBackToText(t *testing.T) {
	_, path := listen(t)
	for name, env := range map[string]map[string]string{
		"no JOURNAL_STREAM": {},
		"no socket":         {"JOURNAL_STREAM": "8:1"},
	} {
		var stderr bytes.Buffer
		sock := path
		if name == "no socket" {
			sock = filepath.Join(t.TempDir(), "missing")
		}
		log := NewLogger(LogOptions{Stderr: &stderr, JournalSocket: sock, Getenv: func(k string) string { return env[k] }})
		log.Info("hello", "transition_id", "t-1")
		if !strings.Contains(stderr.String(), "msg=hello transition_id=t-1") {
			t.Errorf("%s: stderr = %q", name, stderr.String())
		}
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
	// The agent's children do not inherit systemd's variables.
	for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		if v, ok := os.LookupEnv(k); ok {
			t.Errorf("%s=%q still in the environment", k, v)
		}
	}
	if out, err := exec.Command("env").Output(); err != nil || strings.Contains(string(out), "NOTIFY_SOCKET") {
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
	if n.watchdog != 2*time.Second {
		t.Errorf("watchdog = %v, want 2s (WATCHDOG_USEC)", n.watchdog)
	}

	// A watchdog meant for another process is not ours; a bad value is an error that names it.
	t.Setenv("WATCHDOG_USEC", "2000000")
	t.Setenv("WATCHDOG_PID", "1")
	if n, err := NotifierFromEnv(); err != nil || n.watchdog != 0 {
		t.Errorf("another PID's watchdog: %v %v", n.watchdog, err)
	}
	t.Setenv("WATCHDOG_USEC", "soon")
	t.Setenv("WATCHDOG_PID", "")
	if _, err := NotifierFromEnv(); err == nil || !strings.Contains(err.Error(), "WATCHDOG_USEC") {
		t.Errorf("bad WATCHDOG_USEC: %v", err)
	}
	// Outside systemd nothing is sent.
	var none Notifier
	if sent, err := none.Ready("x"); sent || err != nil {
		t.Errorf("outside systemd: sent=%v err=%v", sent, err)
	}
	// A socket that went away is an error, not a silent loss.
	gone := Notifier{socket: filepath.Join(t.TempDir(), "gone.sock")}
	if sent, err := gone.Status("x"); sent || err == nil {
		t.Errorf("missing socket: sent=%v err=%v", sent, err)
	}
}
