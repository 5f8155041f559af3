package vm

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
	"github.com/mailcow-ha/mailcow-ha/imagebuild"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
	"github.com/mailcow-ha/mailcow-ha/lab/reap"
	"github.com/mailcow-ha/mailcow-ha/mailprobe"
)

// Addresses inside the harness's namespace (which plays Hetzner's network: the router for the public side, the
// private network's switch and the metadata service). The servers' addresses are the simulator's: cluster create
// makes the network 10.99.0.0/16 (its subnet 10.99.0.0/24, gateway .1), and each server gets the next private
// address of the subnet and a public one from 203.0.113.20 on.
const (
	Gateway    = "203.0.113.1"
	FloatingIP = "203.0.113.100"
	HostIP     = "10.99.0.1" // the simulator's API on the private switch
	SimAddr    = HostIP + ":8480"
	// MetadataIP is Hetzner's metadata service, as on a server: reached through the default gateway, it answers
	// for the server whose address asks.
	MetadataIP = "169.254.169.254"
	IPRange    = "10.99.0.0/16"
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
	Dir   string
	Image *imagebuild.Image
	NS    *netns.NS
	Sim   *hcloudsim.Sim
	Log   *slog.Logger
	Accel []string // QEMU's accelerator arguments: TCG unless set
	// Bin is the directory of the mailcow-ha binary the image was built with (an arbitrator runs it).
	Bin  string
	srvs []*http.Server
	mu   sync.Mutex
	VMs  []*VM
	arbs []*Arbitrator
	// volumes are the Volumes' files, by id.
	volumes map[int64]string
	// bootErr is the first error of a server created that did not become a VM or an arbitrator.
	bootErr error
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

// New makes the network namespace and an empty simulated project (the appliance's snapshots only). Each server
// created in it becomes a VM booted with the server's user-data (an arbitrator's: an agent on this machine), as
// `hcloud server create` makes a server on Hetzner.
func New(dir string, im *imagebuild.Image, log *slog.Logger) (*Harness, error) {
	// An earlier run that died before its clean-up (a timeout, a signal) left its namespace with its QEMUs in it:
	// they go first (QEMU runs inside the harness's namespace, so the namespace's record covers it).
	if _, err := reap.Sweep(log); err != nil {
		return nil, fmt.Errorf("vm: leftovers of an earlier run: %w", err)
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	h := &Harness{Dir: dir, Image: im, Log: log, Accel: TCG, volumes: map[int64]string{}}
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
	must("addr", "add", MetadataIP+"/32", "dev", "lo")
	if err == nil {
		err = ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
		})
	}
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("vm network: %w", err)
	}
	h.Sim, err = hcloudsim.New(hcloudsim.Options{State: hcloudsim.EmptyProject(), Latencies: hcloudsim.DefaultLatencies(),
		Backend: backend{h}, Logger: log.With("component", "hcloudsim")})
	if err != nil {
		h.Close()
		return nil, err
	}
	for _, addr := range []string{SimAddr, MetadataIP + ":80"} {
		var ln net.Listener
		if err := ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", addr)
			return err
		}); err != nil {
			h.Close()
			return nil, err
		}
		srv := &http.Server{Handler: h.Sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
		h.srvs = append(h.srvs, srv)
		go srv.Serve(ln)
	}
	return h, nil
}

// AddVM makes a guest's two links (public: a tap routed from the gateway; private: a tap on the switch) for a VM
// with these addresses; Boot starts it.
func (h *Harness) AddVM(name string, id int64, pubIP, privIP string) (*VM, error) {
	h.mu.Lock()
	v := &VM{Name: name, ID: id, Index: len(h.VMs) + 1, PrivIP: privIP, PubIP: pubIP, Dir: filepath.Join(h.Dir, name), h: h}
	h.VMs = append(h.VMs, v)
	h.mu.Unlock()
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return nil, err
	}
	pub, priv := v.tap("pub"), v.tap("priv")
	for _, args := range [][]string{
		{"tuntap", "add", "dev", pub, "mode", "tap"},
		{"tuntap", "add", "dev", priv, "mode", "tap"},
		{"link", "set", priv, "master", "br0"},
		{"link", "set", priv, "up"},
		{"link", "set", pub, "up"},
		{"addr", "add", Gateway + "/32", "dev", pub},
		{"route", "add", pubIP + "/32", "dev", pub},
	} {
		if err := h.NS.IP(args...); err != nil {
			return nil, fmt.Errorf("vm network of %s: %w", name, err)
		}
	}
	return v, nil
}

// volumeFile is the file behind a Volume, made at its first attachment: sparse, of the Volume's size, with an
// empty ext4 when the Volume was created with that format (as Hetzner formats it).
func (h *Harness) volumeFile(vol hcloudsim.Volume) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.volumes[vol.ID]; ok {
		return f, nil
	}
	f := filepath.Join(h.Dir, fmt.Sprintf("volume-%d.raw", vol.ID))
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		return "", err
	}
	if err := os.Truncate(f, int64(vol.Size)<<30); err != nil {
		return "", err
	}
	if vol.Format == "ext4" {
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", fmt.Sprintf("vol%d", vol.ID), f).CombinedOutput(); err != nil {
			return "", fmt.Errorf("mkfs.ext4 %s: %w: %s", f, err, out)
		}
	}
	h.volumes[vol.ID] = f
	return f, nil
}

func (v *VM) tap(kind string) string { return fmt.Sprintf("%s%d", kind, v.Index) }

// Close stops every VM (by PID), the arbitrators, the simulator and the namespace.
func (h *Harness) Close() {
	for _, v := range h.vms() {
		v.Kill()
	}
	for _, a := range h.Arbitrators() {
		a.stop()
	}
	for _, srv := range h.srvs {
		srv.Close()
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

func (h *Harness) byID(id int64) *VM {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range h.VMs {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// vms are the VMs made so far.
func (h *Harness) vms() []*VM {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.VMs)
}

// BootErr is the first error of a server that did not become a VM or an arbitrator.
func (h *Harness) BootErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bootErr
}

// Arbitrators are the arbitrators started so far.
func (h *Harness) Arbitrators() []*Arbitrator {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.arbs)
}

// dial connects from the harness's namespace (the router and the private switch).
func (h *Harness) dial(addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := h.NS.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}
