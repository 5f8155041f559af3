// Package daemon is the running node agent: it wires the configuration, keepalived, the brain, the executor,
// the probes and the APIs together, and runs the reconcile loop. The executor applies the brain's actions
// through small interfaces and feeds their outcome back as observations.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/failover"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
)

// Cloud is the Hetzner API as the executor uses it (agent/hcloud.Client).
type Cloud interface {
	FloatingIPOwner(ctx context.Context, id int64) (int64, error)
	FloatingIPAddress(ctx context.Context, id int64) (netip.Addr, error)
	AssignFloatingIP(ctx context.Context, id, server int64) error
	Volume(ctx context.Context, id int64) (hcloud.VolumeInfo, error)
	DetachVolume(ctx context.Context, id, from int64) error
	AttachVolume(ctx context.Context, id, to int64) error
	PowerOff(ctx context.Context, id int64) error
	PowerOn(ctx context.Context, id int64) error
}

// The consumer owns the interface (the executor's Cloud); the adapter must keep fitting it.
var _ Cloud = (*hcloud.Client)(nil)

// Address is the Floating IP on the public interface (agent/vip.VIP).
type Address interface {
	Present(ip netip.Addr) (bool, error)
	Add(ip netip.Addr) error
	Remove(ip netip.Addr) error
	Announce(ip netip.Addr) error
}

// Storage is the shared Volume on this node: wait for its device, mount it (with fsck and the marker check),
// unmount it.
type Storage interface {
	WaitDevice(ctx context.Context, linuxDevice string) error
	Mount(ctx context.Context) error
	Unmount(ctx context.Context) error
	Mounted(ctx context.Context) (bool, error)
}

// Stack is mailcow on the Docker Engine.
type Stack interface {
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	// Failed returns the first critical service that is down, "" when all are up.
	Failed(ctx context.Context) (string, error)
}

// stackRunning is a Stack that counts its running containers (agent/stack).
type stackRunning interface {
	Running(ctx context.Context) (int, error)
}

// Galera is the local Galera node's state.
type Galera interface {
	Status(ctx context.Context) (primary, synced bool, detail string, err error)
}

// Peers reaches the other nodes' agents.
type Peers interface {
	AskDemote(ctx context.Context, server int64) error
}

// Executor applies actions. Each action runs in its own goroutine under its transition's context; a cancel
// action ends them.
type Executor struct {
	Cloud        Cloud
	Address      Address
	Storage      Storage
	Stack        Stack
	Peers        Peers
	Log          *slog.Logger
	Self         int64
	FloatingIP   netip.Addr // known at start, or read from the API on first use
	AddressCache string     // file that keeps the Floating IP's address for a boot without the API
	FloatingID   int64
	// FloatingV6ID is the IPv6 Floating IP (hcloud.floating_ipv6_id, 0: none): assigned with the IPv4 one, and
	// served on its /64's first address (address6), kept in AddressCache+"6".
	FloatingV6ID int64
	floatingV6   netip.Addr
	VolumeID     int64
	// volumeDevice is the Volume's device path as the API gave it (it never changes for a Volume): read with the
	// owners, so that the attach step need not read the Volume again to wait for its device.
	volumeDevice string
	FenceTimeout time.Duration
	StepTimeout  time.Duration // for each API and local step; default 2 minutes
	// StartTimeout is mailcow.start_timeout, the wait for healthy services after a start: the start step gets it on
	// top of StepTimeout, which is left for creating and starting the containers (a first takeover creates them).
	StartTimeout time.Duration
	// MountTimeout is added to the mount step's: backup.restore_timeout on a cluster made from a backup, whose first
	// MASTER fills the new Volume in that step.
	MountTimeout time.Duration
	Confirm      func(server int64)           // answers a peer's pending demote request
	Report       func(a failover.Action)      // journal and webhook
	Observe      func(o failover.Observation) // feeds results back to the loop
	// Extend, when set, is called before a step that may take long (attach, stack start and stop, unmount) with
	// its timeout: the agent asks systemd for that much more time if it is starting or stopping.
	Extend func(d time.Duration)

	mu      sync.Mutex
	cancels map[int]context.CancelFunc
	tctxs   map[int]context.Context
	wg      sync.WaitGroup
	// warms are the warm starts under way, by transition (closed when one ends): a stop waits for them, or a
	// container a cancelled warm start was still starting could outlive the demotion. Guarded by mu.
	warms map[int]chan struct{}
}

// Apply starts the actions of one brain step, in order; the ones that wait run in goroutines.
func (e *Executor) Apply(ctx context.Context, acts []failover.Action) {
	for _, a := range acts {
		switch a.Kind {
		case failover.ActReport:
			e.Report(a)
		case failover.ActCancel:
			e.mu.Lock()
			if c, ok := e.cancels[a.TID]; ok {
				c()
				delete(e.cancels, a.TID)
				delete(e.tctxs, a.TID)
			}
			e.mu.Unlock()
		case failover.ActConfirm:
			if e.Confirm != nil {
				e.Confirm(a.Server)
			}
		default:
			tctx := e.transition(ctx, a.TID)
			if a.Kind == failover.ActWarmStack {
				e.warmBegins(a.TID) // here, before any later stop is dispatched
			}
			e.wg.Add(1)
			go func(a failover.Action) {
				defer e.wg.Done()
				e.run(tctx, a)
			}(a)
		}
	}
}

// SetFenceTimeout changes how long a peer has to confirm its demotion (on reload).
func (e *Executor) SetFenceTimeout(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.FenceTimeout = d
}

// Wait waits for the running actions.
func (e *Executor) Wait() { e.wg.Wait() }

func (e *Executor) transition(ctx context.Context, tid int) context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cancels == nil {
		e.cancels, e.tctxs = map[int]context.CancelFunc{}, map[int]context.Context{}
	}
	// A new transition supersedes the older ones: their goroutines end.
	for id, c := range e.cancels {
		if id < tid {
			c()
			delete(e.cancels, id)
			delete(e.tctxs, id)
		}
	}
	if c, ok := e.tctxs[tid]; ok {
		return c
	}
	c, cancel := context.WithCancel(ctx)
	e.cancels[tid], e.tctxs[tid] = cancel, c
	return c
}

func (e *Executor) step() time.Duration {
	if e.StepTimeout > 0 {
		return e.StepTimeout
	}
	return 2 * time.Minute
}

func (e *Executor) run(ctx context.Context, a failover.Action) {
	log := e.Log.With("transition_id", a.TID, "action", a.Kind)
	start := time.Now()
	done := func(err error) {
		if ctx.Err() != nil && err != nil {
			err = fmt.Errorf("cancelled: %w", err)
		}
		d := failover.Done{TID: a.TID, Action: a.Kind}
		if err != nil {
			d.Err, d.Kind = err.Error(), kindOf(err)
			log.Warn("action failed", "err", err, "took", time.Since(start))
		} else {
			log.Info("action done", "took", time.Since(start))
		}
		e.Observe(d)
	}
	limit := e.step()
	switch a.Kind {
	case failover.ActStartStack:
		limit += e.StartTimeout
	case failover.ActMount:
		limit += e.MountTimeout
	}
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if e.Extend != nil {
		switch a.Kind {
		case failover.ActAttachVolume, failover.ActStartStack, failover.ActStopStack, failover.ActUnmount, failover.ActMount:
			e.Extend(limit)
		}
	}
	switch a.Kind {
	case failover.ActReadOwners:
		o := failover.Owners{TID: a.TID}
		fip, err := e.Cloud.FloatingIPOwner(sctx, e.FloatingID)
		var vol hcloud.VolumeInfo
		if err == nil {
			vol, err = e.Cloud.Volume(sctx, e.VolumeID)
		}
		if err != nil {
			o.Err, o.Kind = err.Error(), kindOf(err)
		} else {
			o.FloatingIP, o.Volume = fip, vol.Server
			e.mu.Lock()
			e.volumeDevice = vol.LinuxDevice
			e.mu.Unlock()
		}
		log.Info("owners", "floating_ip_owner", o.FloatingIP, "volume_owner", o.Volume, "err", o.Err)
		e.Observe(o)
	case failover.ActAskDemote:
		e.mu.Lock()
		fence := e.FenceTimeout
		e.mu.Unlock()
		fctx, fcancel := context.WithTimeout(ctx, fence)
		err := e.Peers.AskDemote(fctx, a.Server)
		fcancel()
		ans := failover.PeerAnswer{TID: a.TID, Server: a.Server, Demoted: err == nil}
		if err != nil {
			ans.Err = err.Error()
		}
		log.Info("peer answered", "peer", a.Server, "demoted", ans.Demoted, "err", ans.Err)
		e.Observe(ans)
	case failover.ActPowerOff:
		done(e.Cloud.PowerOff(sctx, a.Server))
	case failover.ActPowerOn:
		done(e.Cloud.PowerOn(sctx, a.Server))
	case failover.ActDetachVolume:
		done(e.Cloud.DetachVolume(sctx, e.VolumeID, a.Server))
	case failover.ActAttachVolume:
		err := e.Cloud.AttachVolume(sctx, e.VolumeID, e.Self)
		e.mu.Lock()
		dev := e.volumeDevice
		e.mu.Unlock()
		if err == nil && dev == "" { // no owners read in this agent's life: the device from the API
			var v hcloud.VolumeInfo
			if v, err = e.Cloud.Volume(sctx, e.VolumeID); err == nil {
				dev = v.LinuxDevice
			}
		}
		if err == nil {
			err = e.Storage.WaitDevice(sctx, dev)
		}
		done(err)
	case failover.ActAssignFIP:
		done(e.assignFloatingIPs(sctx))
	case failover.ActAddAddress:
		ip, err := e.address(sctx)
		if err == nil {
			err = e.Address.Add(ip)
		}
		if err == nil {
			err = e.Address.Announce(ip)
		}
		if err == nil && e.FloatingV6ID != 0 {
			if ip, err = e.address6(sctx); err == nil {
				err = e.Address.Add(ip)
			}
			if err == nil {
				err = e.Address.Announce(ip)
			}
		}
		done(err)
	case failover.ActMount:
		done(e.Storage.Mount(sctx))
	case failover.ActWarmStack:
		defer e.warmEnds(a.TID)
		done(e.warm(sctx))
	case failover.ActStartStack:
		done(e.Stack.Start(sctx))
	// The demotion steps run even when their transition was superseded: they make the node safe.
	case failover.ActStopStack:
		e.waitWarms()
		done(e.Stack.Stop(context.WithoutCancel(sctx)))
	case failover.ActUnmount:
		done(e.Storage.Unmount(context.WithoutCancel(sctx)))
	case failover.ActRemoveAddr:
		ip, err := e.address(sctx)
		if err == nil {
			err = e.Address.Remove(ip)
		}
		if e.FloatingV6ID != 0 {
			ip6, err6 := e.address6(sctx)
			if err6 == nil {
				err6 = e.Address.Remove(ip6)
			}
			err = errors.Join(err, err6)
		}
		done(err)
	default:
		done(fmt.Errorf("unknown action %q", a.Kind))
	}
}

// assignFloatingIPs routes the Floating IP, and the IPv6 one where there is one, to this server: both requests at
// once, so that the second costs no time.
func (e *Executor) assignFloatingIPs(ctx context.Context) error {
	if e.FloatingV6ID == 0 {
		return e.Cloud.AssignFloatingIP(ctx, e.FloatingID, e.Self)
	}
	var wg sync.WaitGroup
	var err6 error
	wg.Add(1)
	go func() { defer wg.Done(); err6 = e.Cloud.AssignFloatingIP(ctx, e.FloatingV6ID, e.Self) }()
	err := e.Cloud.AssignFloatingIP(ctx, e.FloatingID, e.Self)
	wg.Wait()
	if err6 != nil {
		err6 = fmt.Errorf("the IPv6 Floating IP: %w", err6)
	}
	return errors.Join(err, err6)
}

// address6 is the address the MASTER serves the IPv6 Floating IP on: the first of its /64 (::1; the API names the
// /64 by its network address). Known, cached in AddressCache+"6", or read from the API (and cached).
func (e *Executor) address6(ctx context.Context) (netip.Addr, error) {
	e.mu.Lock()
	ip := e.floatingV6
	e.mu.Unlock()
	if ip.IsValid() {
		return ip, nil
	}
	cache := ""
	if e.AddressCache != "" {
		cache = e.AddressCache + "6"
	}
	if ip, ok := readAddressCache(cache, e.FloatingV6ID); ok {
		e.mu.Lock()
		e.floatingV6 = ip
		e.mu.Unlock()
		return ip, nil
	}
	net6, err := e.Cloud.FloatingIPAddress(ctx, e.FloatingV6ID)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the IPv6 Floating IP's address: %w", err)
	}
	if !net6.Is6() {
		return netip.Addr{}, fmt.Errorf("hcloud.floating_ipv6_id %d is not an IPv6 Floating IP (%s)", e.FloatingV6ID, net6)
	}
	ip = netip.PrefixFrom(net6, 64).Masked().Addr().Next()
	e.mu.Lock()
	e.floatingV6 = ip
	e.mu.Unlock()
	if cache != "" {
		os.MkdirAll(filepath.Dir(cache), 0o755)
		os.WriteFile(cache, []byte(fmt.Sprintf("%d %s\n", e.FloatingV6ID, ip)), 0o644)
	}
	return ip, nil
}

// cachedAddress is the Floating IP's address if it is known already (no API call).
func (e *Executor) cachedAddress() (netip.Addr, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.FloatingIP, e.FloatingIP.IsValid()
}

// address returns the Floating IP's address: known, cached in AddressCache, or read from the API (and cached).
// A node that boots while the API is down still removes a stale address, from the cache.
func (e *Executor) address(ctx context.Context) (netip.Addr, error) {
	e.mu.Lock()
	ip := e.FloatingIP
	e.mu.Unlock()
	if ip.IsValid() {
		return ip, nil
	}
	if ip, ok := readAddressCache(e.AddressCache, e.FloatingID); ok {
		e.mu.Lock()
		e.FloatingIP = ip
		e.mu.Unlock()
		return ip, nil
	}
	ip, err := e.Cloud.FloatingIPAddress(ctx, e.FloatingID)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the Floating IP's address: %w", err)
	}
	e.mu.Lock()
	e.FloatingIP = ip
	e.mu.Unlock()
	if e.AddressCache != "" {
		os.MkdirAll(filepath.Dir(e.AddressCache), 0o755)
		os.WriteFile(e.AddressCache, []byte(fmt.Sprintf("%d %s\n", e.FloatingID, ip)), 0o644)
	}
	return ip, nil
}

// readAddressCache reads the cached address of Floating IP id: the file holds "<id> <address>". A cache of another
// Floating IP (the configuration names a new one) or in the old form without the id is not used: the node would
// put, or remove, an address that is not the cluster's.
func readAddressCache(path string, id int64) (netip.Addr, bool) {
	if path == "" {
		return netip.Addr{}, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Addr{}, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != strconv.FormatInt(id, 10) {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(f[1])
	return ip, err == nil
}

// ObserveWorld looks at the world for the reconcile loop: the address on the interface, the mount, and, when
// withAPI, the Floating IP's owner. Errors leave the look out: a lost look is repaired by the next one.
func (e *Executor) ObserveWorld(ctx context.Context, tid int, withAPI bool) (failover.Observed, error) {
	o := failover.Observed{TID: tid}
	ip, err := e.address(ctx)
	if err != nil {
		return o, err
	}
	if o.Address, err = e.Address.Present(ip); err != nil {
		return o, err
	}
	if o.Mounted, err = e.Storage.Mounted(ctx); err != nil {
		return o, err
	}
	// Without the Volume no container of mailcow may run here: one that does was started by hand. Docker that does
	// not answer leaves this part of the look out, not the rest.
	if r, ok := e.Stack.(stackRunning); ok && !o.Mounted {
		if n, err := r.Running(ctx); err == nil {
			o.StackUp = n > 0
		}
	}
	if withAPI {
		owner, err := e.Cloud.FloatingIPOwner(ctx, e.FloatingID)
		if err != nil {
			return o, err
		}
		o.FIPOwner, o.FIPKnown = owner, true
	}
	return o, nil
}

// kindOf maps the adapter's error kinds to the brain's; errors from elsewhere are fatal for the takeover.
func kindOf(err error) failover.ErrKind {
	switch hcloud.KindOf(err) {
	case hcloud.RetryFast:
		return failover.ErrRetryFast
	case hcloud.RetrySlow:
		return failover.ErrRetrySlow
	case hcloud.Fatal:
		return failover.ErrFatal
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return failover.ErrRetrySlow
	}
	return failover.ErrFatal
}
