package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// Phase is one step of a failover, as offsets from the moment the master was killed.
type Phase struct {
	Name       string
	Start, End time.Duration
}

// Timeline is one failover.
type Timeline struct {
	Old, New string
	How      string
	Killed   time.Time // when the master was broken
	Phases   []Phase
	Total    time.Duration // until the new master's first SMTP banner on the Floating IP
	// Requests is the Hetzner API requests of the new master's takeover (its failover_succeeded line; every call,
	// poll and retry), -1 when its log does not say.
	Requests int
}

// Print writes the timeline as a table.
func (t Timeline) Print(w io.Writer) {
	fmt.Fprintf(w, "failover: %s killed (%s) → %s serves SMTP on %s after %s\n", t.Old, t.How, t.New, FloatingIP, t.Total.Round(10*time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tFROM\tTO\tTOOK")
	for _, p := range t.Phases {
		fmt.Fprintf(tw, "%s\t%6.2fs\t%6.2fs\t%6.2fs\n", p.Name, p.Start.Seconds(), p.End.Seconds(), (p.End - p.Start).Seconds())
	}
	tw.Flush()
	if t.Requests >= 0 {
		fmt.Fprintf(w, "the takeover made %d Hetzner API requests\n", t.Requests)
	}
}

// Failover kills the current master and measures until another node answers SMTP on the Floating IP.
func (l *Lab) Failover(ctx context.Context, how string) (Timeline, error) {
	old, err := l.WaitSettled(ctx, 180*time.Second)
	if err != nil {
		return Timeline{}, err
	}
	n := l.Node(old)
	t0 := time.Now()
	if err := n.Kill(ctx, how); err != nil {
		return Timeline{}, err
	}
	banner := make(chan struct {
		node string
		at   time.Time
	}, 1)
	pctx, cancel := context.WithTimeout(ctx, 180*time.Second)
	defer cancel()
	go func() {
		for pctx.Err() == nil {
			if who := l.smtpBanner(); who != "" && who != old {
				banner <- struct {
					node string
					at   time.Time
				}{who, time.Now()}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	var b struct {
		node string
		at   time.Time
	}
	select {
	case b = <-banner:
	case <-pctx.Done():
		return Timeline{}, fmt.Errorf("lab: no other node answered SMTP on %s within 180s after killing %s", FloatingIP, old)
	}
	tl := Timeline{Old: old, New: b.node, How: how, Killed: t0, Total: b.at.Sub(t0)}
	nn := l.Node(b.node)
	// The start_stack action ends when every critical service is healthy, which may come after the first banner.
	var acts map[string]span
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if acts = agentActions(filepath.Join(nn.Dir, "agent.log"), t0); acts["start_stack"] != (span{}) {
			break
		}
	}
	first := time.Duration(-1)
	for _, a := range acts {
		if first < 0 || a.Start < first {
			first = a.Start
		}
	}
	if first >= 0 {
		tl.Phases = append(tl.Phases, Phase{Name: "detection (VRRP, check)", Start: 0, End: first})
	}
	for _, name := range []string{"read_owners", "ask_demote", "poweroff"} {
		if a, ok := acts[name]; ok {
			tl.Phases = append(tl.Phases, Phase{Name: "agent " + name, Start: a.Start, End: a.End})
		}
	}
	for _, r := range l.Sim.Actions() {
		if r.Started.Before(t0) || r.Finished.IsZero() {
			continue
		}
		switch r.Command {
		case hcloudsim.CmdStopServer, hcloudsim.CmdDetachVolume, hcloudsim.CmdAttachVolume, hcloudsim.CmdAssignFloatingIP:
			tl.Phases = append(tl.Phases, Phase{Name: "API " + r.Command, Start: r.Started.Sub(t0), End: r.Finished.Sub(t0)})
		}
	}
	for _, name := range []string{"attach_volume", "assign_fip", "add_address", "mount", "start_stack"} {
		if a, ok := acts[name]; ok {
			tl.Phases = append(tl.Phases, Phase{Name: "agent " + name, Start: a.Start, End: a.End})
		}
	}
	tl.Requests = -1
	for end := time.Now().Add(10 * time.Second); tl.Requests < 0 && time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		tl.Requests = agentRequests(filepath.Join(nn.Dir, "agent.log"), t0)
	}
	tl.Phases = append(tl.Phases, Phase{Name: "first SMTP banner on the Floating IP", Start: tl.Total, End: tl.Total})
	sort.SliceStable(tl.Phases, func(i, j int) bool { return tl.Phases[i].Start < tl.Phases[j].Start })
	return tl, nil
}

// smtpBanner reads the greeting on the Floating IP's port 25 from the client and returns the node that sent it.
func (l *Lab) smtpBanner() string {
	c, err := l.dialClient(net.JoinHostPort(FloatingIP, "25"), 300*time.Millisecond)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		return ""
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

type span struct{ Start, End time.Duration }

var (
	logTime   = regexp.MustCompile(`^time=(\S+)`)
	logAction = regexp.MustCompile(`msg="action (done|failed)".* action=(\S+)`)
	logTook   = regexp.MustCompile(` took=(\S+)`)
)

// agentActions reads the agent's text log for the actions that finished after t0 (the last of each kind).
func agentActions(path string, t0 time.Time) map[string]span {
	out := map[string]span{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := logAction.FindStringSubmatch(line)
		tm := logTime.FindStringSubmatch(line)
		tk := logTook.FindStringSubmatch(line)
		if m == nil || tm == nil || tk == nil {
			continue
		}
		at, err1 := time.Parse(time.RFC3339Nano, tm[1])
		took, err2 := time.ParseDuration(tk[1])
		if err1 != nil || err2 != nil || at.Before(t0) {
			continue
		}
		out[m[2]] = span{Start: at.Add(-took).Sub(t0), End: at.Sub(t0)}
	}
	return out
}

var logRequests = regexp.MustCompile(`event=failover_succeeded .*api_requests=(\d+)`)

// agentRequests reads the agent's text log for the API requests of the last takeover that succeeded after t0, -1
// for none.
func agentRequests(path string, t0 time.Time) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n := -1
	for _, line := range strings.Split(string(b), "\n") {
		m, tm := logRequests.FindStringSubmatch(line), logTime.FindStringSubmatch(line)
		if m == nil || tm == nil {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, tm[1]); err == nil && !at.Before(t0) {
			n, _ = strconv.Atoi(m[1])
		}
	}
	return n
}

// BenchResult is the failover benchmark.
type BenchResult struct {
	Runs      []Timeline // the agent's order: fencing, then the Volume and the Floating IP in parallel
	SeqRuns   []Timeline // the original scripts' order (failover.sequential): detach, attach, assign, start
	Floor     time.Duration
	FloorWhy  string
	SeqFloor  time.Duration
	Latencies hcloudsim.Latencies
}

// BenchFailover powers off the master runs times (the old master is powered on again between runs), and as many
// times with the agents switched to the original scripts' sequential order (failover.sequential, through a
// reload), taking turns, and reports each phase's median and spread against the floor that the simulated API latencies impose.
// The breaker is raised for the benchmark and put back afterwards: so many takeovers within the hour would
// rightly trip it.
func (l *Lab) BenchFailover(ctx context.Context, runs int, progress io.Writer) (r BenchResult, err error) {
	lat := hcloudsim.DefaultLatencies()
	if l.o.Latencies != nil {
		lat = *l.o.Latencies
	}
	// Fencing a powered-off master: poweroff, then (detach + attach) in parallel with assign.
	stop, det, att, asg := lat[hcloudsim.CmdStopServer], lat[hcloudsim.CmdDetachVolume], lat[hcloudsim.CmdAttachVolume], lat[hcloudsim.CmdAssignFloatingIP]
	r = BenchResult{Floor: stop + max(det+att, asg), SeqFloor: stop + det + att + asg, Latencies: lat,
		FloorWhy: fmt.Sprintf("poweroff %s + max(detach %s + attach %s, assign %s)", stop, det, att, asg)}
	breaker := l.o.BreakerMax
	if err := l.setAndWait(ctx, func() error { return l.SetBreaker(1000) }); err != nil {
		return r, err
	}
	defer func() {
		err = errors.Join(err, l.setAndWait(ctx, func() error { return l.SetSequential(false) }),
			l.setAndWait(ctx, func() error { return l.SetBreaker(breaker) }))
	}()
	// The two orders take turns, so that both meet the same nodes in the same states (a node's first takeover
	// also creates its containers: about 1 s more, measured).
	for i := 0; i < runs; i++ {
		for _, seq := range []bool{false, true} {
			if err := l.setAndWait(ctx, func() error { return l.SetSequential(seq) }); err != nil {
				return r, err
			}
			tl, err := l.Failover(ctx, "power")
			if err != nil {
				return r, err
			}
			order := "parallel"
			if seq {
				order = "sequential"
				r.SeqRuns = append(r.SeqRuns, tl)
			} else {
				r.Runs = append(r.Runs, tl)
			}
			fmt.Fprintf(progress, "run %d %s: %s → %s in %s\n", i+1, order, tl.Old, tl.New, tl.Total.Round(10*time.Millisecond))
			// The new MASTER powers the old one on again (failover.power_on_fenced); otherwise this does.
			if err := l.PowerOn(ctx, l.Node(tl.Old), time.Minute); err != nil {
				return r, err
			}
			// Let the old master come back as BACKUP and Galera resync before the next run.
			if err := l.waitRole(ctx, tl.Old, "BACKUP", 180*time.Second); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// setAndWait applies a configuration change and waits until every powered agent reported that it reloaded.
func (l *Lab) setAndWait(ctx context.Context, change func() error) error {
	t0 := time.Now()
	if err := change(); err != nil {
		return err
	}
	var want []Want
	for _, n := range l.Nodes {
		if n.Powered() {
			want = append(want, Want{Event: "config_reloaded", Node: n.Name})
		}
	}
	if missing := l.Alerts.WaitAlerts(t0, 30*time.Second, want...); len(missing) > 0 {
		return fmt.Errorf("lab: reload not confirmed: %v", missing)
	}
	return nil
}

func (l *Lab) waitRole(ctx context.Context, node, role string, within time.Duration) error {
	n := l.Node(node)
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if a, err := n.AgentState(); err == nil && strings.EqualFold(a.Role, role) && a.GaleraOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("lab: %s not %s with Galera synced within %s", node, role, within)
}

// Print writes each phase's median and spread and the total against the floor, for the agent's order and, when
// measured, the original scripts' sequential order.
func (r BenchResult) Print(w io.Writer) {
	fmt.Fprintf(w, "failover benchmark: master powered off; simulated API latencies %s\n", r.FloorWhy)
	med := printRuns(w, fmt.Sprintf("agent (fence, then Volume ∥ Floating IP): %d runs", len(r.Runs)), r.Runs)
	fmt.Fprintf(w, "floor %s; median total / floor = %.2f\n", r.Floor, med.Seconds()/r.Floor.Seconds())
	if len(r.SeqRuns) == 0 {
		return
	}
	fmt.Fprintln(w)
	seq := printRuns(w, fmt.Sprintf("original scripts' order (detach, attach, assign, start): %d runs", len(r.SeqRuns)), r.SeqRuns)
	fmt.Fprintf(w, "its floor %s; median total / floor = %.2f\n", r.SeqFloor, seq.Seconds()/r.SeqFloor.Seconds())
	fmt.Fprintf(w, "\nagent / original order = %.2f (median total %.2fs vs %.2fs)\n", med.Seconds()/seq.Seconds(), med.Seconds(), seq.Seconds())
}

// printRuns prints one table of phases (done at, from the kill) and returns the median total.
func printRuns(w io.Writer, title string, runs []Timeline) time.Duration {
	order, phases, totals := collect(runs)
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE (done at, from the kill)\tMEDIAN\tMIN\tMAX")
	for _, name := range order {
		med, lo, hi := stats(phases[name])
		fmt.Fprintf(tw, "%s\t%6.2fs\t%6.2fs\t%6.2fs\n", name, med.Seconds(), lo.Seconds(), hi.Seconds())
	}
	med, lo, hi := stats(totals)
	fmt.Fprintf(tw, "TOTAL (first SMTP banner)\t%6.2fs\t%6.2fs\t%6.2fs\n", med.Seconds(), lo.Seconds(), hi.Seconds())
	if rq := requests(runs); len(rq) > 0 {
		m, l, h := stats(rq)
		fmt.Fprintf(tw, "API REQUESTS (the takeover's)\t%6d\t%6d\t%6d\n", int(m), int(l), int(h))
	}
	tw.Flush()
	return med
}

// collect gathers each phase's end over the runs (the phases in the order they first appear) and the totals.
func collect(runs []Timeline) (order []string, phases map[string][]time.Duration, totals []time.Duration) {
	phases = map[string][]time.Duration{}
	for _, t := range runs {
		totals = append(totals, t.Total)
		for _, p := range t.Phases {
			if _, ok := phases[p.Name]; !ok {
				order = append(order, p.Name)
			}
			phases[p.Name] = append(phases[p.Name], p.End)
		}
	}
	return order, phases, totals
}

// requests lists the runs' request counts that are known, as durations for stats.
func requests(runs []Timeline) []time.Duration {
	var out []time.Duration
	for _, t := range runs {
		if t.Requests >= 0 {
			out = append(out, time.Duration(t.Requests))
		}
	}
	return out
}

// Spread is a median, minimum and maximum.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// PhaseSpread is one phase's spread over the runs (seconds from the kill to the phase's end).
type PhaseSpread struct {
	Name string `json:"name"`
	Spread
}

// OrderSummary is one order's runs.
type OrderSummary struct {
	Runs        int           `json:"runs"`
	Phases      []PhaseSpread `json:"phases"`
	Total       Spread        `json:"first_banner_seconds"`
	FloorRatio  float64       `json:"median_over_floor"`
	Requests    *Spread       `json:"api_requests,omitempty"`
	FloorSecond float64       `json:"floor_seconds"`
}

// BenchSummary is the benchmark as `lab bench failover --json` prints it.
type BenchSummary struct {
	Floor      string        `json:"floor"`
	Agent      OrderSummary  `json:"agent"`
	Sequential *OrderSummary `json:"sequential,omitempty"`
	// SequentialOverAgent is the sequential order's median first banner divided by the agent's.
	SequentialOverAgent float64 `json:"sequential_over_agent,omitempty"`
}

// Summary is each order's phases, first banner and API requests: median, minimum and maximum.
func (r BenchResult) Summary() BenchSummary {
	sum := func(runs []Timeline, floor time.Duration) OrderSummary {
		o := OrderSummary{Runs: len(runs), FloorSecond: floor.Seconds()}
		order, phases, totals := collect(runs)
		secs := func(ds []time.Duration) Spread {
			m, l, h := stats(ds)
			return Spread{m.Seconds(), l.Seconds(), h.Seconds()}
		}
		for _, name := range order {
			o.Phases = append(o.Phases, PhaseSpread{Name: name, Spread: secs(phases[name])})
		}
		o.Total = secs(totals)
		if floor > 0 {
			o.FloorRatio = o.Total.Median / floor.Seconds()
		}
		if rq := requests(runs); len(rq) > 0 {
			m, l, h := stats(rq)
			o.Requests = &Spread{float64(m), float64(l), float64(h)}
		}
		return o
	}
	out := BenchSummary{Floor: r.FloorWhy, Agent: sum(r.Runs, r.Floor)}
	if len(r.SeqRuns) > 0 {
		seq := sum(r.SeqRuns, r.SeqFloor)
		out.Sequential = &seq
		if out.Agent.Total.Median > 0 {
			out.SequentialOverAgent = seq.Total.Median / out.Agent.Total.Median
		}
	}
	return out
}

func stats(ds []time.Duration) (med, lo, hi time.Duration) {
	if len(ds) == 0 {
		return
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[0], s[len(s)-1]
}
