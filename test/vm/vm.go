package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/imagebuild"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailprobe"
)

// Addresses inside the harness's namespace (which plays Hetzner's network: the router for the public side and
// the private network's switch).
const (
	Gateway    = "203.0.113.1"
	FloatingIP = "203.0.113.100"
	HostIP     = "10.99.0.1" // the simulator (API and metadata) on the private switch
	SimAddr    = HostIP + ":8480"
	VolumeID   = 3001
)

// Tools the VM tests need, with their Debian packages.
var tools = map[string]string{"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "genisoimage": "genisoimage"}

// Preflight says why VMs cannot run here, or "".
func Preflight() string {
	if why := netns.Available(); why != "" {
		return why
	}
	for bin, pkg := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("%s is not installed (Debian package %s; make deps installs it)", bin, pkg)
		}
	}
	if why := mailprobe.Preflight(); why != "" {
		return why
	}
	return imagebuild.LocalPreflight()
}

// Harness runs VMs of one image on one network with one simulated Hetzner project.
type Harness struct {
	Dir    string
	Image  *imagebuild.Image
	NS     *netns.NS
	Sim    *hcloudsim.Sim
	Volume string // the Volume's backing file
	Log    *slog.Logger
	srv    *http.Server
	VMs    []*VM
	Accel  []string // QEMU's accelerator arguments: TCG unless set
	arbs   []*Arbitrator
}

// VM is one QEMU guest.
type VM struct {
	Name   string
	ID     int64
	Index  int // 1-based
	PrivIP string
	PubIP  string
	Dir    string
	Booted time.Time
	h      *Harness
	args   []string
	mu     sync.Mutex
	cmd    *exec.Cmd
	qmp    *QMP
	done   chan struct{}
	// The console's progress: its size when last read, since when it has had that size, and the longest silence
	// seen (for the notes on how much slower a machine may be).
	conSize    int64
	conSince   time.Time
	conLongest time.Duration
}

// New makes the network namespace, the simulated project with n servers, and the Volume's file.
func New(dir string, im *imagebuild.Image, n int, log *slog.Logger) (*Harness, error) {
	// An earlier run that died before its clean-up (a timeout, a signal) left its namespace with its QEMUs in it:
	// they go first (QEMU runs inside the harness's namespace, so the namespace's record covers it).
	if _, err := reap.Sweep(log); err != nil {
		return nil, fmt.Errorf("vm: leftovers of an earlier run: %w", err)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := &Harness{Dir: dir, Image: im, Log: log, Volume: filepath.Join(dir, "volume.raw"), Accel: TCG}
	var err error
	if h.NS, err = netns.Add(netns.Unique("vm")); err != nil {
		return nil, err
	}
	ns := h.NS
	must := func(args ...string) {
		if err == nil {
			err = ns.IP(args...)
		}
	}
	must("link", "add", "br0", "type", "bridge")
	must("link", "set", "br0", "up")
	must("addr", "add", HostIP+"/24", "dev", "br0")
	must("link", "set", "lo", "up")
	for i := 1; i <= n; i++ {
		v := &VM{Name: fmt.Sprintf("vm%d", i), ID: int64(1000 + i), Index: i, PrivIP: fmt.Sprintf("10.99.0.%d", 10+i),
			PubIP: fmt.Sprintf("203.0.113.%d", 10+i), Dir: filepath.Join(dir, fmt.Sprintf("vm%d", i)), h: h}
		h.VMs = append(h.VMs, v)
		pub, priv := v.tap("pub"), v.tap("priv")
		must("tuntap", "add", "dev", pub, "mode", "tap")
		must("tuntap", "add", "dev", priv, "mode", "tap")
		must("link", "set", priv, "master", "br0")
		must("link", "set", priv, "up")
		must("link", "set", pub, "up")
		must("addr", "add", Gateway+"/32", "dev", pub)
		must("route", "add", v.PubIP+"/32", "dev", pub)
	}
	if err == nil {
		err = ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		})
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("vm network: %w", err)
	}
	if err := os.WriteFile(h.Volume, nil, 0o600); err != nil {
		return nil, err
	}
	if err := os.Truncate(h.Volume, 512<<20); err != nil {
		return nil, err
	}
	st := hcloudsim.DemoState()
	st.Servers = st.Servers[:min(n, len(st.Servers))]
	for i := range st.Servers {
		st.Servers[i].Name = h.VMs[i].Name
		h.VMs[i].ID = st.Servers[i].ID
		st.Servers[i].PrivateNet[0].IP = h.VMs[i].PrivIP
		st.Servers[i].PublicIPv4 = h.VMs[i].PubIP
	}
	h.Sim, err = hcloudsim.New(hcloudsim.Options{State: st, Latencies: hcloudsim.DefaultLatencies(), Backend: backend{h}, Logger: log.With("component", "hcloudsim")})
	if err != nil {
		h.Close()
		return nil, err
	}
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", SimAddr)
		return err
	}); err != nil {
		h.Close()
		return nil, err
	}
	h.srv = &http.Server{Handler: h.Sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go h.srv.Serve(ln)
	return h, nil
}

func (v *VM) tap(kind string) string { return fmt.Sprintf("%s%d", kind, v.Index) }

// Close stops every VM (by PID), the arbitrators, the simulator and the namespace.
func (h *Harness) Close() {
	for _, v := range h.VMs {
		v.Kill()
	}
	for _, a := range h.arbs {
		a.stop()
	}
	if h.srv != nil {
		h.srv.Close()
	}
	if h.NS != nil {
		h.NS.Del()
	}
}

// Boot starts the VM with a NoCloud seed holding userData; it returns once QEMU runs.
func (v *VM) Boot(userData string) error {
	if err := os.MkdirAll(filepath.Join(v.Dir, "seed"), 0o755); err != nil {
		return err
	}
	im := v.h.Image
	overlay := filepath.Join(v.Dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", im.Path(im.Disk), "-F", "qcow2", overlay).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img: %w: %s", err, out)
	}
	seed := filepath.Join(v.Dir, "seed")
	files := map[string]string{
		"user-data": userData,
		"meta-data": fmt.Sprintf("instance-id: iid-%s-%d\nlocal-hostname: %s\n", v.Name, time.Now().UnixNano(), v.Name),
		// The public address in a /24 with its gateway, the private network on eth1. (Hetzner hands out a /32 with an
		// on-link gateway by DHCP; a static on-link route is not rendered by Debian 12's cloud-init 22.4 for networkd:
		// the VM had no default route and, with rp_filter, answered no ARP on eth0 at all.)
		"network-config": fmt.Sprintf("version: 2\nethernets:\n  eth0:\n    addresses: [%s/24]\n    routes:\n      - to: 0.0.0.0/0\n        via: %s\n  eth1:\n    addresses: [%s/24]\n",
			v.PubIP, Gateway, v.PrivIP),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	iso := filepath.Join(v.Dir, "seed.iso")
	if out, err := exec.Command("genisoimage", "-quiet", "-o", iso, "-V", "cidata", "-r", "-J",
		filepath.Join(seed, "user-data"), filepath.Join(seed, "meta-data"), filepath.Join(seed, "network-config")).CombinedOutput(); err != nil {
		return fmt.Errorf("genisoimage: %w: %s", err, out)
	}
	// Two emulated CPUs for every guest, on two cores. The guests are rarely all busy at once: while one MASTER
	// starts mailcow (18 containers, two real mail servers), its peer idles as a BACKUP, and with one CPU each that
	// start left a core unused.
	smp := "2"
	cmdline := im.KernelCmdline + " systemd.journald.forward_to_console=1 systemd.journald.max_level_console=info"
	v.args = []string{"netns", "exec", v.h.NS.Name, "qemu-system-x86_64", "-name", v.Name}
	v.args = append(v.args, v.h.Accel...)
	v.args = append(v.args, "-smp", smp, "-m", "2048",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", im.Path(im.Kernel), "-initrd", im.Path(im.Initrd), "-append", cmdline,
		"-drive", "file="+overlay+",if=virtio,format=qcow2,cache=unsafe,discard=unmap",
		"-drive", "file="+iso+",if=virtio,format=raw,readonly=on",
		"-device", "virtio-rng-pci",
		"-device", "virtio-scsi-pci,id=scsi0",
		"-netdev", "tap,id=pub,ifname="+v.tap("pub")+",script=no,downscript=no",
		"-device", fmt.Sprintf("virtio-net-pci,netdev=pub,mac=52:54:00:99:01:%02x", v.Index),
		"-netdev", "tap,id=priv,ifname="+v.tap("priv")+",script=no,downscript=no",
		"-device", fmt.Sprintf("virtio-net-pci,netdev=priv,mac=52:54:00:99:02:%02x", v.Index),
		"-serial", "file:"+v.Console(),
		"-qmp", "unix:"+v.qmpPath()+",server=on,wait=off",
	)
	return v.start()
}

func (v *VM) qmpPath() string { return filepath.Join(v.Dir, "qmp.sock") }

// Console is the serial console's file.
func (v *VM) Console() string { return filepath.Join(v.Dir, "console.log") }

func (v *VM) start() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	logf, err := os.OpenFile(filepath.Join(v.Dir, "qemu.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	os.Remove(v.qmpPath())
	// ip netns exec execs QEMU in place: the PID is QEMU's.
	cmd := exec.Command("ip", v.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("qemu: %w", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	v.cmd, v.done, v.Booted = cmd, done, time.Now()
	q, err := DialQMP(v.qmpPath(), 10*time.Second)
	if err != nil {
		cmd.Process.Kill()
		return err
	}
	v.qmp = q
	v.h.Log.Info("vm started", "vm", v.Name, "pid", cmd.Process.Pid)
	return nil
}

// Running says whether QEMU runs.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.done == nil {
		return false
	}
	select {
	case <-v.done:
		return false
	default:
		return true
	}
}

// Quit ends the VM at once, like pulling its power: QMP quit, then SIGKILL to its PID if it lingers.
func (v *VM) Quit() {
	v.mu.Lock()
	q, cmd, done := v.qmp, v.cmd, v.done
	v.mu.Unlock()
	if cmd == nil {
		return
	}
	if q != nil {
		q.Do("quit", nil)
		q.Close()
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Kill ends the VM by PID (cleanup).
func (v *VM) Kill() {
	v.mu.Lock()
	cmd, done := v.cmd, v.done
	v.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// QMP returns the VM's QMP client.
func (v *VM) QMP() *QMP {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// ConsoleText returns the serial console so far, without terminal escapes.
func (v *VM) ConsoleText() string {
	b, _ := os.ReadFile(v.Console())
	return ansi.ReplaceAllString(string(b), "")
}

// ErrFailure is returned by WaitConsole when a failure pattern shows first.
var ErrFailure = errors.New("failure on the console")

// DefaultFailures are what no scenario expects on the console.
var DefaultFailures = []*regexp.Regexp{
	regexp.MustCompile(`Kernel panic`),
	regexp.MustCompile(`end Kernel panic`),
	regexp.MustCompile(`Failed to start .*(mailcow-ha|docker|nftables|cloud-init|systemd-networkd)`),
}

// Quiet is how long the VM's console has printed nothing, as of now.
func (v *VM) Quiet() time.Duration {
	var size int64
	if fi, err := os.Stat(v.Console()); err == nil {
		size = fi.Size()
	}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if size != v.conSize || v.conSince.IsZero() {
		v.conSize, v.conSince = size, now
	}
	q := now.Sub(v.conSince)
	v.conLongest = max(v.conLongest, q)
	return q
}

// LongestQuiet is the longest the console was silent while someone waited on it.
func (v *VM) LongestQuiet() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.conLongest
}

// Quiet is the shortest silence of the running VMs' consoles: how long no running VM has printed anything.
func (h *Harness) Quiet() time.Duration {
	q := time.Duration(-1)
	for _, v := range h.VMs {
		if v.Running() {
			if vq := v.Quiet(); q < 0 || vq < q {
				q = vq
			}
		}
	}
	return max(q, 0)
}

// WaitConsole waits until want matches the console. It fails when a failure pattern matches, QEMU ends, the
// console printed nothing for quiet (the guest is stuck), or ctx ends. It sets no bound of its own on how long a
// guest that makes progress may take: under emulation that is the machine's speed, not the product's.
func (v *VM) WaitConsole(ctx context.Context, want *regexp.Regexp, failures []*regexp.Regexp, quiet time.Duration) (string, error) {
	for {
		text := v.ConsoleText()
		if m := want.FindString(text); m != "" {
			return m, nil
		}
		for _, f := range failures {
			if m := f.FindString(text); m != "" {
				return "", fmt.Errorf("%s: %w: %q", v.Name, ErrFailure, m)
			}
		}
		if !v.Running() {
			return "", fmt.Errorf("%s: QEMU ended before %q", v.Name, want)
		}
		if q := v.Quiet(); q > quiet {
			return "", fmt.Errorf("%s: no %q, and the console printed nothing for %s", v.Name, want, q.Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%s: no %q within the test's time: %w", v.Name, want, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ConsoleTail returns the console's last lines (for failure messages).
func (v *VM) ConsoleTail(n int) string {
	lines := strings.Split(strings.TrimRight(v.ConsoleText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (h *Harness) byID(id int64) *VM {
	for _, v := range h.VMs {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// backend makes the simulator's decisions real: the router's route for the Floating IP, the Volume as a SCSI disk
// hot-plugged into the VM (vendor HC, product Volume, serial = the Volume's id, as at Hetzner), power as QEMU.
type backend struct{ h *Harness }

func (b backend) FloatingIPRouted(ip hcloudsim.FloatingIP, server int64) error {
	v := b.h.byID(server)
	if v == nil {
		return b.h.NS.IP("route", "del", ip.IP+"/32")
	}
	return b.h.NS.IP("route", "replace", ip.IP+"/32", "dev", v.tap("pub"))
}

func volNode(id int64) string { return fmt.Sprintf("vol%d", id) }

func (b backend) VolumeAttached(vol hcloudsim.Volume, server int64) error {
	v := b.h.byID(server)
	if v == nil || !v.Running() {
		return fmt.Errorf("vm: server %d is not running", server)
	}
	q := v.QMP()
	if _, err := q.Do("blockdev-add", map[string]any{"driver": "raw", "node-name": volNode(vol.ID),
		"file": map[string]any{"driver": "file", "filename": b.h.Volume}}); err != nil {
		return err
	}
	_, err := q.Do("device_add", map[string]any{"driver": "scsi-hd", "id": volNode(vol.ID), "drive": volNode(vol.ID),
		"bus": "scsi0.0", "vendor": "HC", "product": "Volume", "serial": fmt.Sprint(vol.ID)})
	if err != nil {
		q.Do("blockdev-del", map[string]any{"node-name": volNode(vol.ID)})
		return err
	}
	b.h.Log.Info("volume hot-plugged", "vm", v.Name, "volume", vol.ID)
	return nil
}

func (b backend) VolumeDetached(vol hcloudsim.Volume, server int64) error {
	v := b.h.byID(server)
	if v == nil || !v.Running() {
		return nil // a dead VM holds nothing
	}
	q := v.QMP()
	if _, err := q.Do("device_del", map[string]any{"id": volNode(vol.ID)}); err != nil {
		return err
	}
	if err := q.WaitEvent("DEVICE_DELETED", 30*time.Second); err != nil {
		return err
	}
	_, err := q.Do("blockdev-del", map[string]any{"node-name": volNode(vol.ID)})
	b.h.Log.Info("volume hot-unplugged", "vm", v.Name, "volume", vol.ID, "err", err)
	return err
}

func (b backend) ServerPower(s hcloudsim.Server, on bool) error {
	v := b.h.byID(s.ID)
	if v == nil {
		return nil
	}
	if on {
		if v.Running() || v.args == nil {
			return nil
		}
		go v.start()
		return nil
	}
	go v.Quit()
	return nil
}
