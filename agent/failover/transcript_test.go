package failover

import (
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/event"
	"github.com/mailcow-ha/mailcow-ha/agent/report"
)

var update = flag.Bool("update", false, "rewrite testdata/*.txt with the brain's actual output")

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// catalogSeverities is the catalog's severity of each event: every event a transcript reports must be reported
// at it.
func catalogSeverities() map[event.Name]string {
	m := map[event.Name]string{}
	for _, e := range report.Catalog() {
		m[e.Name] = e.Severity
	}
	return m
}

// TestTranscripts replays every scenario in testdata/: the lines that start with "at" are observations, the lines
// that start with ">" (actions) and "=" (role, phase and verdict afterwards) are what the brain must answer.
func TestTranscripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) < 20 {
		t.Fatalf("only %d scenarios in testdata", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := replay(string(src))
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(f, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != string(src) {
				t.Errorf("transcript differs (run go test ./agent/failover -update and review the diff):\n%s", diff(string(src), got))
			}
		})
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// replay runs a transcript and returns it with freshly computed outputs.
func replay(src string) (string, error) {
	var out strings.Builder
	var p Params
	s := Initial()
	severities := catalogSeverities()
	for n, line := range strings.Split(strings.TrimRight(src, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, ">"), strings.HasPrefix(line, "="):
			continue
		case strings.HasPrefix(line, "params "):
			var err error
			if p, err = parseParams(line); err != nil {
				return "", fmt.Errorf("line %d: %w", n+1, err)
			}
			out.WriteString(line + "\n")
		case strings.HasPrefix(line, "at "):
			now, o, err := parseEvent(line, s)
			if err != nil {
				return "", fmt.Errorf("line %d: %w", n+1, err)
			}
			out.WriteString(line + "\n")
			var acts []Action
			s, acts = Step(p, s, o, now)
			for _, a := range acts {
				out.WriteString("> " + a.String() + "\n")
				if a.Kind == ActReport && string(a.Severity) != severities[a.Event] {
					return "", fmt.Errorf("line %d: %s reported as %s, the catalog says %q", n+1, a.Event, a.Severity, severities[a.Event])
				}
			}
			v, why := Verdict(p, s, now)
			phase := ""
			if s.Phase != PhaseNone {
				phase = " " + string(s.Phase)
				if s.Retry {
					phase = " retry_" + string(s.Phase)
				}
			}
			fmt.Fprintf(&out, "= %s%s verdict=%v %q\n", s.Role, phase, v, why)
		default:
			out.WriteString(line + "\n")
		}
	}
	return out.String(), nil
}

func parseParams(line string) (Params, error) {
	p := Params{Peers: map[int64]string{}}
	durations := map[string]*time.Duration{"check_grace": &p.CheckGrace, "quorum_grace": &p.QuorumGrace,
		"fence_timeout": &p.FenceTimeout, "breaker_window": &p.BreakerWindow, "api_backoff": &p.APIBackoff}
	for _, f := range strings.Fields(line)[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return p, fmt.Errorf("params: %q", f)
		}
		var err error
		switch d, isDuration := durations[k]; {
		case isDuration:
			*d, err = time.ParseDuration(v)
		case k == "self":
			p.Self, err = strconv.ParseInt(v, 10, 64)
		case k == "name":
			p.Name = v
		case k == "peers":
			for _, pe := range strings.Split(v, ",") {
				id, name, _ := strings.Cut(pe, ":")
				n, e := strconv.ParseInt(id, 10, 64)
				if e != nil {
					return p, e
				}
				p.Peers[n] = name
			}
		case k == "breaker_max":
			p.BreakerMax, err = strconv.Atoi(v)
		case k == "sequential":
			p.Sequential, err = strconv.ParseBool(v)
		case k == "power_on_fenced":
			p.PowerOnFenced, err = strconv.ParseBool(v)
		default:
			return p, fmt.Errorf("params: unknown %q", k)
		}
		if err != nil {
			return p, fmt.Errorf("params %s: %w", k, err)
		}
	}
	return p, nil
}

// parseEvent reads "at <offset> <observation...>". Results without an explicit tN use the current transition.
func parseEvent(line string, s State) (time.Time, Observation, error) {
	f := splitQuoted(line)
	if len(f) < 3 {
		return time.Time{}, nil, fmt.Errorf("want: at <offset> <observation>")
	}
	off, err := time.ParseDuration(f[1])
	if err != nil {
		return time.Time{}, nil, err
	}
	now := t0.Add(off)
	args := f[3:]
	tid := s.TID
	if n := len(args); n > 0 && strings.HasPrefix(args[n-1], "t") {
		if v, err := strconv.Atoi(args[n-1][1:]); err == nil {
			tid, args = v, args[:n-1]
		}
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	kv := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		}
	}
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	switch f[2] {
	case "boot":
		return now, Boot{}, nil
	case "tick":
		return now, Tick{}, nil
	case "stop":
		return now, Stop{}, nil
	case "vrrp":
		return now, VRRP{State: VRRPState(arg(0))}, nil
	case "galera":
		return now, Galera{Primary: arg(0) == "ok", Synced: arg(0) == "ok", Unknown: arg(0) == "unknown", Detail: strings.Join(args[min(1, len(args)):], " ")}, nil
	case "stack":
		if arg(0) == "ok" {
			return now, Stack{}, nil
		}
		return now, Stack{Failed: arg(1)}, nil
	case "owners":
		if arg(0) == "error" {
			return now, Owners{TID: tid, Err: arg(2), Kind: ErrKind(arg(1))}, nil
		}
		return now, Owners{TID: tid, FloatingIP: num(kv["fip"]), Volume: num(kv["volume"])}, nil
	case "peer":
		return now, PeerAnswer{TID: tid, Server: num(arg(0)), Demoted: arg(1) == "demoted", Err: arg(2)}, nil
	case "done":
		return now, Done{TID: tid, Action: ActionKind(arg(0))}, nil
	case "failed":
		return now, Done{TID: tid, Action: ActionKind(arg(0)), Kind: ErrKind(arg(1)), Err: arg(2)}, nil
	case "maintenance":
		return now, Maintenance{On: arg(0) == "on"}, nil
	case "switchover":
		if len(args) == 0 {
			return now, Switchover{}, nil
		}
		hold, err := time.ParseDuration(kv["hold"])
		if err != nil {
			return now, nil, err
		}
		return now, Switchover{To: kv["to"], Until: now.Add(hold)}, nil
	case "observed":
		o := Observed{TID: tid, Address: kv["address"] == "yes", Mounted: kv["mounted"] == "yes", StackUp: kv["stack"] == "up"}
		if v, ok := kv["fip"]; ok {
			o.FIPOwner, o.FIPKnown = num(v), true
		}
		return now, o, nil
	case "demote-request":
		return now, DemoteRequest{From: num(kv["from"])}, nil
	case "breaker-reset":
		return now, BreakerReset{}, nil
	}
	return now, nil, fmt.Errorf("unknown observation %q", f[2])
}

// splitQuoted splits on blanks, keeping "quoted strings" (without the quotes) as one field.
func splitQuoted(s string) []string {
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return append(out, s[1:])
			}
			out = append(out, s[1:end+1])
			s = s[end+2:]
			continue
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return append(out, s)
		}
		out = append(out, s[:i])
		s = s[i:]
	}
	return out
}

// TestPure checks that the brain imports nothing that does I/O.
func TestPure(t *testing.T) {
	// agent/event is a leaf of constants (the event names): no code, no I/O.
	allowed := []string{"fmt", "slices", "strings", "time", "github.com/mailcow-ha/mailcow-ha/agent/event"}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !slices.Contains(allowed, path) {
				t.Errorf("%s imports %s; the brain may import only %v", f, path, allowed)
			}
		}
	}
}

// TestStepDoesNotMutateInput checks that Step treats its State as a value.
func TestStepDoesNotMutateInput(t *testing.T) {
	p := Params{Self: 1, Name: "a", Peers: map[int64]string{2: "b"}, BreakerMax: 5, BreakerWindow: time.Hour, FenceTimeout: time.Second}
	s := State{Role: RoleBackup, VRRP: VRRPBackup, GaleraOK: true, Takeovers: make([]time.Time, 1, 8)}
	before := fmt.Sprintf("%+v", s)
	Step(p, s, VRRP{State: VRRPMaster}, t0)
	if after := fmt.Sprintf("%+v", s); after != before || len(s.Takeovers) != 1 || !s.Takeovers[:2][1].IsZero() {
		t.Fatalf("Step changed its input:\n%s\n%s", before, after)
	}
	d := State{Role: RoleDemoting, Phase: Phase(ActStopStack), VRRP: VRRPBackup, GaleraOK: true, ConfirmTo: make([]int64, 1, 8)}
	d.ConfirmTo[0] = 2
	Step(p, d, DemoteRequest{From: 3}, t0)
	if len(d.ConfirmTo) != 1 || d.ConfirmTo[:2][1] != 0 {
		t.Fatalf("Step changed its input's ConfirmTo: %v", d.ConfirmTo[:2])
	}
}
