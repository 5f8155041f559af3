package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogWriterNamesTheChildAndJoinsPartialLines(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	w := newLogWriter(log, "mariadbd")
	for _, piece := range []string{"[Note] WSREP: Shifting ", "SYNCED -> ", "JOINED\n[Note] second\r\n", "\n", "third"} {
		if n, err := w.Write([]byte(piece)); err != nil || n != len(piece) {
			t.Fatalf("Write(%q) = %d, %v", piece, n, err)
		}
	}
	got := out.String()
	want := `level=INFO msg="mariadbd: [Note] WSREP: Shifting SYNCED -> JOINED"` + "\n" + `level=INFO msg="mariadbd: [Note] second"` + "\n"
	if got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "keepalived") || strings.Contains(got, "third") {
		t.Errorf("wrong name, or an unfinished line went out: %s", got)
	}
}
