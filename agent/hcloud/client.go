// Package hcloud is the agent's adapter to the Hetzner Cloud API, on hcloud-go: it reads and moves the Floating
// IP and the Volume, fences servers by powering them off, finds the newest appliance snapshot, the cluster's servers
// and a server's Volumes (inventory.go), and reads the metadata service. Every action is awaited with exponential polling; every error carries one of three kinds
// (retry fast, retry slowly, fatal) so that the failover brain can decide; requests, the rate-limit budget and
// latencies are counted.
package hcloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	hc "github.com/hetznercloud/hcloud-go/v2/hcloud"
)

// VolumeInfo is what the agent needs to know of a Volume.
type VolumeInfo struct {
	ID          int64
	Name        string
	Server      int64 // 0: attached nowhere
	LinuxDevice string
	Labels      map[string]string
}

// Options configures a Client.
type Options struct {
	Endpoint   string // default https://api.hetzner.cloud/v1
	Token      string // the API token; required
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Action polling: exponential from PollBase by PollFactor, capped at PollCap. hcloud-go's default, a constant
	// 500 ms, spends the 3600 requests/hour budget quickly.
	PollBase, PollCap time.Duration
	PollFactor        float64
	// Retry waits: RetryFast waits FastWait; RetrySlow backs off from SlowBase, doubling, to SlowCap, or waits for
	// the rate limit's reset.
	FastWait, SlowBase, SlowCap time.Duration
	// Fastest seeds the shortest duration of each kind of action (by command) that an earlier client saw: the caller
	// keeps it across restarts, so that a node's first takeover after a boot has its polls aligned too. OnFastest
	// is given the whole table each time a shorter action is seen, to keep it.
	Fastest   map[string]time.Duration
	OnFastest func(map[string]time.Duration)
}

// Client is the adapter. It is safe for concurrent use.
type Client struct {
	api  atomic.Pointer[hc.Client]
	rec  *statsRecorder
	log  *slog.Logger
	opts Options

	// fastest is the shortest duration the API reported for each kind of action (its command) so far: the
	// first poll of the next one waits for it (await).
	fastMu  sync.Mutex
	fastest map[string]time.Duration
}

// New returns a client. The token is handed to hcloud-go and kept nowhere else.
func New(o Options) (*Client, error) {
	if o.Token == "" {
		return nil, errors.New("hcloud: no API token")
	}
	if o.Endpoint == "" {
		o.Endpoint = hc.Endpoint
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	defaults := map[*time.Duration]time.Duration{
		&o.PollBase: 200 * time.Millisecond, &o.PollCap: 500 * time.Millisecond,
		&o.FastWait: 250 * time.Millisecond, &o.SlowBase: time.Second, &o.SlowCap: 5 * time.Second,
	}
	for p, d := range defaults {
		if *p <= 0 {
			*p = d
		}
	}
	if o.PollFactor <= 1 {
		o.PollFactor = 1.25
	}
	rec := newStatsRecorder()
	httpClient := *o.HTTPClient
	next := httpClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	httpClient.Transport = countingTransport{next: next, rec: rec}
	o.HTTPClient = &httpClient
	c := &Client{rec: rec, log: o.Logger, opts: o, fastest: maps.Clone(o.Fastest)}
	c.opts.Fastest = nil
	c.SetToken(o.Token)
	c.opts.Token = ""
	return c, nil
}

// SetToken makes every later request use token (a rotated token: config apply). Requests under way finish with
// the token they started with. The token is handed to hcloud-go and kept nowhere else.
func (c *Client) SetToken(token string) {
	o := c.opts
	c.api.Store(hc.NewClient(
		hc.WithEndpoint(o.Endpoint),
		hc.WithToken(token),
		hc.WithHTTPClient(o.HTTPClient),
		hc.WithApplication("mailcow-ha", ""),
		// One retry policy only, ours: hcloud-go's own does not cover locked and would hide attempts.
		hc.WithRetryOpts(hc.RetryOpts{MaxRetries: 0}),
		hc.WithPollOpts(hc.PollOpts{BackoffFunc: hc.ExponentialBackoffWithOpts(hc.ExponentialBackoffOpts{
			Base: o.PollBase, Multiplier: o.PollFactor, Cap: o.PollCap,
		})}),
	))
}

// hc is hcloud-go's client with the current token.
func (c *Client) hc() *hc.Client { return c.api.Load() }

// Stats returns the request counters, the rate-limit budget and the latencies so far.
func (c *Client) Stats() Stats { return c.rec.snapshot() }

// call runs fn until it succeeds, fails fatally, or ctx ends. It waits briefly after a RetryFast error and backs
// off after a RetrySlow one. The error it returns is classified.
func (c *Client) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	start := time.Now()
	ctx = withOp(ctx, op)
	slow := c.opts.SlowBase
	var err error
	for attempt := 1; ; attempt++ {
		err = classify(op, fn(ctx))
		c.rec.attempt(op, err)
		if err == nil {
			break
		}
		var e *Error
		errors.As(err, &e)
		if e.Kind == Fatal || ctx.Err() != nil {
			break
		}
		wait := c.opts.FastWait
		if e.Kind == RetrySlow {
			wait = slow
			slow = min(slow*2, c.opts.SlowCap)
			if e.RetryAfter > 0 {
				wait = e.RetryAfter
			}
		}
		c.log.Warn("hcloud call failed, retrying", "op", op, "attempt", attempt, "kind", e.Kind.String(),
			"code", e.Code, "correlation_id", e.CorrelationID, "wait", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
			continue
		}
		break
	}
	c.rec.op(op, time.Since(start), err)
	return err
}

// await waits for an action with exponential polling; an action still running when ctx ends is ErrActionRunning.
//
// The polls are aligned with what the API has shown: when an action of the same kind has finished before, the
// first poll comes when the fastest of them would have finished, and 2 % more (from the action's start as the API
// reports it), and the exponential polls only after it. A kind never seen is polled from the start. Every poll is a request
// against the project's 3600 an hour; polling a 3 s action from 200 ms on takes eight of them. The shortest
// duration, not a mean: a first poll after the action finished costs that much time in a takeover, one before it
// costs a request.
func (c *Client) await(ctx context.Context, a *hc.Action) error {
	if a == nil {
		return nil
	}
	if d := c.fastestOf(a.Command); d > 0 && !a.Started.IsZero() {
		// The fastest is the least of many, so most actions end a little after it (the lab: 1-100 ms): a poll at
		// exactly the fastest mostly came too early and cost a request and PollBase more. 2 % later (at most
		// 100 ms) finds most of them done.
		d += min(d/50, 100*time.Millisecond)
		// WaitFor's first poll comes PollBase after it is called. Never more than d from now: the API's clock
		// may be ahead of this node's.
		if wait := min(time.Until(a.Started.Add(d)), d) - c.opts.PollBase; wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
	var took time.Duration
	err := c.hc().Action.WaitForFunc(ctx, func(u *hc.Action) error {
		if u.Status == hc.ActionStatusError {
			return u.Error()
		}
		if u.Status == hc.ActionStatusSuccess && !u.Finished.IsZero() && !u.Started.IsZero() {
			took = u.Finished.Sub(u.Started)
		}
		return nil
	}, a)
	if err == nil && took > 0 {
		c.learn(a.Command, took)
	}
	if err != nil && ctx.Err() != nil {
		c.log.Warn("hcloud action still running", "hcloud_action_id", a.ID, "command", a.Command)
		return fmt.Errorf("action %d (%s): %w", a.ID, a.Command, ErrActionRunning)
	}
	if err == nil {
		c.rec.action(time.Since(a.Started))
		c.log.Info("hcloud action done", "hcloud_action_id", a.ID, "command", a.Command, "took", time.Since(a.Started).Round(time.Millisecond))
	} else {
		c.log.Warn("hcloud action failed", "hcloud_action_id", a.ID, "command", a.Command, "err", err)
	}
	return err
}

// fastestOf is the shortest duration seen for actions of command, 0 for none.
func (c *Client) fastestOf(command string) time.Duration {
	c.fastMu.Lock()
	defer c.fastMu.Unlock()
	return c.fastest[command]
}

// learn keeps took when it is the shortest duration seen for actions of command, and hands the table to
// OnFastest when it changed.
func (c *Client) learn(command string, took time.Duration) {
	c.fastMu.Lock()
	if c.fastest == nil {
		c.fastest = map[string]time.Duration{}
	}
	d, ok := c.fastest[command]
	shorter := !ok || took < d
	if shorter {
		c.fastest[command] = took
	}
	table := maps.Clone(c.fastest)
	c.fastMu.Unlock()
	if shorter && c.opts.OnFastest != nil {
		c.opts.OnFastest(table)
	}
}

func notFound(what string, id int64) error {
	return &Error{Kind: Fatal, Code: string(hc.ErrorCodeNotFound), Err: fmt.Errorf("%s %d not found", what, id)}
}

// FloatingIPOwner returns the server the Floating IP routes to, 0 for none.
func (c *Client) FloatingIPOwner(ctx context.Context, id int64) (int64, error) {
	var owner int64
	err := c.call(ctx, "floating_ip_owner", func(ctx context.Context) error {
		f, err := c.getFloatingIP(ctx, id)
		if err != nil {
			return err
		}
		owner = 0
		if f.Server != nil {
			owner = f.Server.ID
		}
		return nil
	})
	return owner, err
}

// FloatingIPAddress returns the Floating IP's address.
func (c *Client) FloatingIPAddress(ctx context.Context, id int64) (netip.Addr, error) {
	var ip netip.Addr
	err := c.call(ctx, "floating_ip_address", func(ctx context.Context) error {
		f, err := c.getFloatingIP(ctx, id)
		if err != nil {
			return err
		}
		a, ok := netip.AddrFromSlice(f.IP)
		if !ok {
			return &Error{Kind: Fatal, Code: "invalid_ip", Err: fmt.Errorf("floating IP %d has no address", id)}
		}
		ip = a.Unmap()
		return nil
	})
	return ip, err
}

// FloatingIPPTR returns the reverse DNS name of the Floating IP's address.
func (c *Client) FloatingIPPTR(ctx context.Context, id int64) (string, error) {
	var ptr string
	err := c.call(ctx, "floating_ip_ptr", func(ctx context.Context) error {
		f, err := c.getFloatingIP(ctx, id)
		if err != nil {
			return err
		}
		ptr = f.DNSPtr[f.IP.String()]
		return nil
	})
	return ptr, err
}

// SetFloatingIPPTR sets the reverse DNS name of the Floating IP's address and waits until the API reports it done.
func (c *Client) SetFloatingIPPTR(ctx context.Context, id int64, ptr string) error {
	return c.call(ctx, "change_dns_ptr", func(ctx context.Context) error {
		f, err := c.getFloatingIP(ctx, id)
		if err != nil {
			return err
		}
		a, _, err := c.hc().FloatingIP.ChangeDNSPtr(ctx, f, f.IP.String(), &ptr)
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}

// AssignFloatingIP routes the Floating IP to server and waits until the API reports it done. No read comes first (a
// request less in every takeover): the API's assign moves the address from wherever it is routed, and an assign to
// the server that has it already is an action that changes nothing.
func (c *Client) AssignFloatingIP(ctx context.Context, id, server int64) error {
	return c.call(ctx, "assign_floating_ip", func(ctx context.Context) error {
		a, _, err := c.hc().FloatingIP.Assign(ctx, &hc.FloatingIP{ID: id}, &hc.Server{ID: server})
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}

// UnassignFloatingIP unroutes the Floating IP, if it routes anywhere.
func (c *Client) UnassignFloatingIP(ctx context.Context, id int64) error {
	return c.call(ctx, "unassign_floating_ip", func(ctx context.Context) error {
		f, err := c.getFloatingIP(ctx, id)
		if err != nil {
			return err
		}
		if f.Server == nil {
			return nil
		}
		a, _, err := c.hc().FloatingIP.Unassign(ctx, f)
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}

// Volume returns the Volume's attachment and device path.
func (c *Client) Volume(ctx context.Context, id int64) (VolumeInfo, error) {
	var info VolumeInfo
	err := c.call(ctx, "volume", func(ctx context.Context) error {
		v, err := c.getVolume(ctx, id)
		if err != nil {
			return err
		}
		info = volumeInfo(v)
		return nil
	})
	return info, err
}

func (c *Client) getFloatingIP(ctx context.Context, id int64) (*hc.FloatingIP, error) {
	f, _, err := c.hc().FloatingIP.GetByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, notFound("floating IP", id)
	}
	return f, nil
}

func (c *Client) getVolume(ctx context.Context, id int64) (*hc.Volume, error) {
	v, _, err := c.hc().Volume.GetByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, notFound("volume", id)
	}
	return v, nil
}

func volumeInfo(v *hc.Volume) VolumeInfo {
	info := VolumeInfo{ID: v.ID, Name: v.Name, LinuxDevice: v.LinuxDevice, Labels: v.Labels}
	if v.Server != nil {
		info.Server = v.Server.ID
	}
	return info
}

// DetachVolume detaches the Volume from server from. It does nothing when the Volume is attached nowhere, and
// refuses (Fatal, ErrUnexpectedOwner) when it is attached to another server.
func (c *Client) DetachVolume(ctx context.Context, id, from int64) error {
	return c.call(ctx, "detach_volume", func(ctx context.Context) error {
		v, err := c.getVolume(ctx, id)
		if err != nil {
			return err
		}
		switch owner := volumeInfo(v).Server; owner {
		case 0:
			return nil
		case from:
		default:
			return fmt.Errorf("volume %d is attached to server %d, not %d: %w", id, owner, from, ErrUnexpectedOwner)
		}
		a, _, err := c.hc().Volume.Detach(ctx, v)
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}

// AttachVolume attaches the Volume to server to, only while it is free: the API itself refuses to attach an attached
// Volume (volume_already_attached), so no read comes first, a request less in every takeover. It does nothing when
// the Volume is attached there already, and refuses (Fatal, the API's volume_already_attached) when it is attached
// elsewhere.
func (c *Client) AttachVolume(ctx context.Context, id, to int64) error {
	return c.call(ctx, "attach_volume", func(ctx context.Context) error {
		a, _, err := c.hc().Volume.AttachWithOpts(ctx, &hc.Volume{ID: id}, hc.VolumeAttachOpts{Server: &hc.Server{ID: to}, Automount: hc.Ptr(false)})
		if hc.IsError(err, hc.ErrorCodeVolumeAlreadyAttached) {
			// Attached here already (an earlier try of ours, or our own action that finished after a try gave up on
			// it) is done. Attached anywhere else stays fatal.
			if v, rerr := c.getVolume(ctx, id); rerr == nil && volumeInfo(v).Server == to {
				return nil
			}
		}
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}

// ServerStatus returns the server's status: running, off, starting, stopping...
func (c *Client) ServerStatus(ctx context.Context, id int64) (string, error) {
	var status string
	err := c.call(ctx, "server_status", func(ctx context.Context) error {
		s, _, err := c.hc().Server.GetByID(ctx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return notFound("server", id)
		}
		status = string(s.Status)
		return nil
	})
	return status, err
}

// PowerOff cuts the server's power (fencing) and waits until the API reports it off.
func (c *Client) PowerOff(ctx context.Context, id int64) error {
	return c.call(ctx, "poweroff", func(ctx context.Context) error {
		s, _, err := c.hc().Server.GetByID(ctx, id)
		if err != nil {
			return err
		}
		if s == nil {
			return notFound("server", id)
		}
		if s.Status == hc.ServerStatusOff {
			return nil
		}
		a, _, err := c.hc().Server.Poweroff(ctx, s)
		if err != nil {
			return err
		}
		if err := c.await(ctx, a); err != nil {
			return err
		}
		s, _, err = c.hc().Server.GetByID(ctx, id)
		if err != nil {
			return err
		}
		if s == nil || s.Status != hc.ServerStatusOff {
			return &Error{Kind: RetryFast, Code: "not_off", Err: fmt.Errorf("server %d: poweroff done but status is not off", id)}
		}
		return nil
	})
}

// PowerOn switches the server on and waits for the action.
func (c *Client) PowerOn(ctx context.Context, id int64) error {
	return c.call(ctx, "poweron", func(ctx context.Context) error {
		a, _, err := c.hc().Server.Poweron(ctx, &hc.Server{ID: id})
		if err != nil {
			return err
		}
		return c.await(ctx, a)
	})
}
