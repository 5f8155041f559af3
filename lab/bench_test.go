package lab

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

// BenchmarkLabFailover brings up a 3-node lab with the simulator's default latencies and powers off the MASTER
// five times in the agent's order and five times in the original scripts' sequential order, printing each phase's median and spread against the floor the API latencies impose.
func BenchmarkLabFailover(b *testing.B) {
	if why := Preflight(); why != "" {
		b.Skip(why)
	}
	bin, stub := buildBinsTB(b)
	root, _ := filepath.Abs("..")
	dir := filepath.Join(root, "build", "test-lab", netns.Unique("bench-"))
	b.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	began := time.Now()
	l, err := Up(ctx, Options{Dir: dir, Bin: bin, StubBin: stub, MailCache: mailservers.CacheDir(root), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Down() })
	if _, err := l.WaitSettled(ctx, 240*time.Second); err != nil {
		b.Fatal(err)
	}
	up := time.Since(began)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := l.BenchFailover(ctx, 5, os.Stdout)
		if err != nil {
			b.Fatal(err)
		}
		r.Print(os.Stdout)
		var totals []time.Duration
		for _, run := range r.Runs {
			totals = append(totals, run.Total)
		}
		med, _, _ := stats(totals)
		b.ReportMetric(med.Seconds(), "failover-s")
		b.ReportMetric(med.Seconds()/r.Floor.Seconds(), "x-floor")
		var seq []time.Duration
		for _, run := range r.SeqRuns {
			seq = append(seq, run.Total)
		}
		smed, _, _ := stats(seq)
		b.ReportMetric(smed.Seconds(), "sequential-failover-s")
		b.ReportMetric(med.Seconds()/smed.Seconds(), "x-sequential")
	}
	b.ReportMetric(up.Seconds(), "lab-up-s")
	b.ReportMetric(float64(l.RSS())/(1<<20), "lab-rss-MiB")
}
