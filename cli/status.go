package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/api"
	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/membership"
)

// StatusReply is one node's answer to `mailcow-ha status`: its /status, or why it did not answer.
type StatusReply struct {
	Node   string          `json:"node"`
	URL    string          `json:"url"`
	Status *api.NodeStatus `json:"status,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Status asks every member's agent for its /status (over the private network, on the port of api.listen) and
// prints one table, or JSON. Unreachable members are shown as such; the exit code is 1 when any is.
func Status(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("status", "status [--json] [--timeout 3s] [--config PATH]", stdio)
	src := sourceFlags(fs)
	jsonOut := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for each node")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	cfg, _, err := loadConfig(ctx, *src)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha status: %v\n", err)
		return ExitUsage
	}
	port, err := statusPort(cfg.API.Listen)
	if err != nil {
		fmt.Fprintf(stdio.Stderr, "mailcow-ha status: %v\n", err)
		return ExitUsage
	}
	if cfg.Discovers() {
		if cfg.Cluster.Nodes, err = membership.Cached(&cfg); err != nil {
			fmt.Fprintf(stdio.Stderr, "mailcow-ha status: %v\n", err)
			return ExitFailure
		}
	}
	replies := askAll(ctx, cfg, port, *timeout)
	if *jsonOut {
		enc := json.NewEncoder(stdio.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(replies)
	} else {
		printStatus(stdio.Stdout, replies, time.Now())
	}
	for _, r := range replies {
		if r.Status == nil {
			return ExitFailure
		}
	}
	return ExitOK
}

// statusPort finds the api.listen port that peers reach over the private network.
func statusPort(listen []string) (string, error) {
	for _, l := range listen {
		host, port, err := net.SplitHostPort(l)
		if err == nil && (host == config.PrivateHost || host == "" || host == "0.0.0.0" || host == "::") {
			return port, nil
		}
	}
	return "", errors.New(`api.listen has no address on the private network ("private:7480"): the peers cannot be asked`)
}

func askAll(ctx context.Context, cfg config.Config, port string, timeout time.Duration) []StatusReply {
	var members []config.Member
	for _, m := range cfg.Cluster.Nodes {
		if !m.IsArbitrator() {
			members = append(members, m)
		}
	}
	out := make([]StatusReply, len(members))
	hc := &http.Client{Timeout: timeout}
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := StatusReply{Node: m.Name, URL: "http://" + net.JoinHostPort(m.PrivateIP, port) + "/status"}
			st, err := getStatus(ctx, hc, r.URL)
			if err != nil {
				r.Error = err.Error()
			} else {
				r.Status = &st
			}
			out[i] = r
		}()
	}
	wg.Wait()
	return out
}

func getStatus(ctx context.Context, hc *http.Client, url string) (api.NodeStatus, error) {
	var st api.NodeStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("unreachable: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("not a status document: %w", err)
	}
	return st, nil
}

func printStatus(w io.Writer, replies []StatusReply, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tGALERA\tSTACK\tVOLUME\tFLOATING IP\tLAST TRANSITION\tBREAKER\tMAINTENANCE\tVERSION\tMAILCOW")
	releases := map[string]bool{}
	for _, r := range replies {
		if r.Status == nil {
			fmt.Fprintf(tw, "%s\tunreachable\t-\t-\t-\t-\t%s\t-\t-\t-\t-\n", r.Node, r.Error)
			continue
		}
		s := r.Status
		stack := "stopped"
		switch {
		case s.Stack.Healthy:
			stack = "healthy"
		case s.Stack.Failed != "":
			stack = "failed: " + s.Stack.Failed
		}
		vol := "-"
		if s.Volume.Mounted {
			vol = "mounted"
		}
		fip := "-"
		if s.FloatingIP.OnInterface {
			fip = "on interface"
			if s.FloatingIP.Address != "" {
				fip = s.FloatingIP.Address
			}
		}
		last := "-"
		if len(s.Transitions) > 0 {
			t := s.Transitions[0]
			last = fmt.Sprintf("#%d %s", t.ID, t.Kind)
			if !t.Finished.IsZero() {
				last += fmt.Sprintf(" → %s in %s, %s ago", t.Result, t.Finished.Sub(t.Started).Round(100*time.Millisecond),
					now.Sub(t.Finished).Round(time.Second))
			} else {
				last += " (running)"
			}
		}
		breaker := fmt.Sprintf("%d/%d", s.Breaker.Takeovers, s.Breaker.Max)
		if s.Breaker.Tripped {
			breaker += " TRIPPED"
		}
		maint := "-"
		if s.Maintenance {
			maint = "on"
		}
		version := s.Version
		if version == "" {
			version = "-" // an agent older than the field
		}
		mc := orDash(s.Mailcow)
		releases[mc] = true
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, strings.ToUpper(s.Role), s.Galera.Detail, stack, vol, fip, last, breaker, maint, version, mc)
	}
	tw.Flush()
	if len(releases) > 1 {
		fmt.Fprintln(w, "warning: the nodes hold different mailcow releases; `mailcow-ha mailcow update --to TAG` brings the others to TAG")
	}
	printBackups(w, replies, now)
}

// printBackups says what the MASTER read of the backup repository, and each node's last failed copy.
func printBackups(w io.Writer, replies []StatusReply, now time.Time) {
	copyOf := func(c api.BackupCopy) string {
		if c.Time.IsZero() {
			return "none"
		}
		return fmt.Sprintf("%s ago (%s, from %s)", now.Sub(c.Time).Round(time.Minute), c.Snapshot, c.Node)
	}
	for _, r := range replies {
		if r.Status == nil || r.Status.Backup == nil {
			continue
		}
		b := r.Status.Backup
		if !b.Checked.IsZero() {
			fmt.Fprintf(w, "backups (read by %s %s ago): Volume %s, database %s\n", r.Node, now.Sub(b.Checked).Round(time.Second), copyOf(b.Volume), copyOf(b.Database))
			if b.Problem != "" {
				fmt.Fprintf(w, "warning: %s\n", b.Problem)
			}
		}
		if b.LastRun != nil && !b.LastRun.OK {
			fmt.Fprintf(w, "warning: %s's last %s backup failed %s ago: %s\n", r.Node, b.LastRun.Kind, now.Sub(b.LastRun.Time).Round(time.Second), b.LastRun.Error)
		}
	}
}
