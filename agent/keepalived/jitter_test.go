package keepalived

import (
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// TestNoFlapUnderJitterAndLoad holds the default advert interval to its promise: with both cores kept busy and
// the adverts delayed by a varying queue on both sides, the MASTER stays MASTER and the BACKUP stays BACKUP; then a
// MASTER that stops dead (its VRRP process frozen, as a power cut leaves it) is detected within the interval's
// master-down time and a margin.
//
// The delay: this machine's kernel has no netem, so each side's eth1 gets a token bucket (tbf, 8 Mbit/s, at most
// 40 ms queued) and a sender that fills its queue with bursts of random size at random times, which delays the
// adverts behind them by 0-30 ms and drops none. MAILCOW_HA_ADVERT (a duration) and MAILCOW_HA_JITTER_FOR (how
// long to watch, default 20s) measure other intervals without a change here.
func TestNoFlapUnderJitterAndLoad(t *testing.T) {
	if _, err := exec.LookPath("tc"); err != nil {
		t.Skip("tc is not installed (Debian package iproute2)")
	}
	interval := config.Keepalived{VRRPVersion: 3}.Advert() // the default of a cluster that cluster create makes
	if v := os.Getenv("MAILCOW_HA_ADVERT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MAILCOW_HA_ADVERT: %v", err)
		}
		interval = d
	}
	watch := 20 * time.Second
	if v := os.Getenv("MAILCOW_HA_JITTER_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MAILCOW_HA_JITTER_FOR: %v", err)
		}
		watch = d
	}
	a, b := keepalivedPair(t, "10.99.0.12")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	every := func(s *Spec) { s.AdvertInterval = interval }
	na := startNode(ctx, t, a, "mx1", "10.99.0.11", []string{"10.99.0.12"}, 150, every)
	na.wait(t, "MASTER", 15*time.Second)
	nb := startNode(ctx, t, b, "mx2", "10.99.0.12", []string{"10.99.0.11"}, 100, every)
	nb.wait(t, "BACKUP", 15*time.Second)

	jitter(ctx, t, a, "10.99.0.12")
	jitter(ctx, t, b, "10.99.0.11")
	load(t)
	// The delay must vary, or this tests nothing.
	lo, hi := roundTrips(t, a, b, "10.99.0.12")
	t.Logf("round trips across the link under the bursts: %s to %s", lo, hi)
	if hi-lo < 5*time.Millisecond {
		t.Fatalf("the round trip varies by %s only: no jitter", hi-lo)
	}
	t.Logf("advert_int %s: both cores busy, adverts queued behind random bursts both ways, watched for %s", interval, watch)
	select {
	case e := <-na.events:
		t.Fatalf("a false failover: the MASTER went %s; keepalived said:\n%s", e.State, na.out.String())
	case e := <-nb.events:
		t.Fatalf("a false failover: the BACKUP went %s; keepalived said:\n%s", e.State, nb.out.String())
	case <-time.After(watch):
	}

	// A MASTER that stops dead sends no last advert of priority 0: the BACKUP waits out the master-down interval
	// (three adverts and the skew, (256 - priority) / 256 of one).
	pid := vrrpPid(t, na)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	took := nb.wait(t, "MASTER", 10*time.Second)
	masterDown := 3*interval + interval*(256-100)/256
	t.Logf("detection under the same load: the BACKUP became MASTER %s after the MASTER froze (master-down interval %s)", took, masterDown)
	if limit := masterDown + interval + 200*time.Millisecond; took > limit {
		t.Errorf("detection took %s, more than the master-down interval %s and a margin (%s)", took, masterDown, limit)
	}
}

// roundTrips sends 40 UDP probes 50 ms apart from ns a to an echo in ns b at addr and returns the shortest and
// the longest round trip.
func roundTrips(t *testing.T, a, b *netns.NS, addr string) (lo, hi time.Duration) {
	t.Helper()
	var echo, probe net.PacketConn
	if err := b.Do(func() (err error) { echo, err = net.ListenPacket("udp", net.JoinHostPort(addr, "7")); return err }); err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	if err := a.Do(func() (err error) { probe, err = net.ListenPacket("udp", ":0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	to := &net.UDPAddr{IP: net.ParseIP(addr), Port: 7}
	buf := make([]byte, 64)
	lo = time.Hour
	for range 40 {
		t0 := time.Now()
		probe.SetReadDeadline(t0.Add(time.Second))
		if _, err := probe.WriteTo([]byte("probe"), to); err != nil {
			t.Fatal(err)
		}
		if _, _, err := probe.ReadFrom(buf); err != nil {
			t.Fatalf("a probe got no answer within a second: %v", err)
		}
		rtt := time.Since(t0)
		lo, hi = min(lo, rtt), max(hi, rtt)
		time.Sleep(50 * time.Millisecond)
	}
	return lo, hi
}

// vrrpPid is the pid of keepalived's VRRP process, from the pid file it writes in the node's run directory.
func vrrpPid(t *testing.T, n *kaNode) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.proc.RunDir, "vrrp.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("vrrp.pid: %q", b)
	}
	return pid
}

// jitter shapes eth1 in ns to 8 Mbit/s with at most 40 ms queued (tbf) and sends bursts of 0-30 KB of UDP to peer
// (port 9, discard) every 30-60 ms: an advert that leaves right after a burst waits behind it, up to 30 ms; one that
// leaves when the queue has drained waits not at all. The queue never overflows: 30 KB at 8 Mbit/s drains in 30 ms, before the next burst.
func jitter(ctx context.Context, t *testing.T, ns *netns.NS, peer string) {
	t.Helper()
	if out, err := ns.Command("tc", "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "8mbit", "burst", "4kb", "latency", "40ms").CombinedOutput(); err != nil {
		t.Fatalf("tc: %v: %s", err, out)
	}
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.Dial("udp", net.JoinHostPort(peer, "9"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		payload := make([]byte, 1000)
		for ctx.Err() == nil {
			for range rand.IntN(31) {
				conn.Write(payload) // a refused port is the peer's answer, not an error here
			}
			time.Sleep(time.Duration(30+rand.IntN(31)) * time.Millisecond)
		}
	}()
}

// load keeps every core busy with two spinning processes per core until the test ends, ended by their PIDs.
func load(t *testing.T) {
	t.Helper()
	for range 2 * runtime.NumCPU() {
		cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
}
