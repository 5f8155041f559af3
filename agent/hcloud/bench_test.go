package hcloud

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

// BenchmarkTakeover measures what one full takeover costs through the API, with the simulator's default action
// latencies: read the owners, power the old master off, detach the Volume there, attach it here, assign the
// Floating IP here. It reports the API requests spent and the wall time as a ratio to the floor that the
// simulated latencies impose (sequential: the sum of the four actions; parallel: poweroff, then the longer of
// detach+attach and assign).
func BenchmarkTakeover(b *testing.B) {
	lat := hcloudsim.DefaultLatencies()
	seqFloor := lat[hcloudsim.CmdStopServer] + lat[hcloudsim.CmdDetachVolume] + lat[hcloudsim.CmdAttachVolume] + lat[hcloudsim.CmdAssignFloatingIP]
	parFloor := lat[hcloudsim.CmdStopServer] + max(lat[hcloudsim.CmdDetachVolume]+lat[hcloudsim.CmdAttachVolume], lat[hcloudsim.CmdAssignFloatingIP])
	for _, mode := range []struct {
		name     string
		parallel bool
		floor    time.Duration
	}{{"sequential", false, seqFloor}, {"parallel", true, parFloor}} {
		b.Run(mode.name, func(b *testing.B) {
			var requests int
			var wall time.Duration
			for range b.N {
				b.StopTimer()
				st := hcloudsim.DemoState()
				st.FloatingIPs[0].Server = 1001
				st.Volumes[0].Server = 1001
				sim, err := hcloudsim.New(hcloudsim.Options{State: st})
				if err != nil {
					b.Fatal(err)
				}
				srv := httptest.NewServer(sim.Handler())
				c, err := New(Options{Endpoint: srv.URL + "/v1", Token: hcloudsim.DemoToken})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if err := takeover(context.Background(), c, 1001, 1002, mode.parallel); err != nil {
					b.Fatal(err)
				}
				wall += time.Since(start)
				b.StopTimer()
				total, _ := sim.Requests()
				requests += total
				final := sim.State()
				if final.FloatingIPs[0].Server != 1002 || final.Volumes[0].Server != 1002 || final.Servers[0].Status != "off" {
					b.Fatalf("takeover incomplete: %+v", final)
				}
				srv.Close()
				sim.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
			b.ReportMetric((wall / time.Duration(b.N)).Seconds(), "wall_s/op")
			b.ReportMetric(mode.floor.Seconds(), "floor_s")
			b.ReportMetric(float64(wall/time.Duration(b.N))/float64(mode.floor), "x_floor")
		})
	}
}

// takeover is the API part of docs/design.md §4, steps 3–5, as the executor will run it.
func takeover(ctx context.Context, c *Client, old, self int64, parallel bool) error {
	if _, err := c.FloatingIPOwner(ctx, 2001); err != nil {
		return err
	}
	if _, err := c.Volume(ctx, 3001); err != nil {
		return err
	}
	if err := c.PowerOff(ctx, old); err != nil {
		return err
	}
	moveVolume := func() error {
		if err := c.DetachVolume(ctx, 3001, old); err != nil {
			return err
		}
		return c.AttachVolume(ctx, 3001, self)
	}
	if !parallel {
		if err := moveVolume(); err != nil {
			return err
		}
		return c.AssignFloatingIP(ctx, 2001, self)
	}
	var wg sync.WaitGroup
	var errV, errF error
	wg.Add(2)
	go func() { defer wg.Done(); errV = moveVolume() }()
	go func() { defer wg.Done(); errF = c.AssignFloatingIP(ctx, 2001, self) }()
	wg.Wait()
	if errV != nil {
		return errV
	}
	return errF
}
