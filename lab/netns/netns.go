// Package netns makes and removes the network namespaces, links and bridges that the lab and the tests use,
// with iproute2's ip command, and runs Go code inside a namespace.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/mailcow-ha/mailcow-ha/lab/reap"
)

// NS is a named network namespace (ip netns).
type NS struct {
	Name string
}

// Available reports why namespaces cannot be made here, or "" when they can: it needs root and ip.
func Available() string {
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2's ip command is not installed"
	}
	out, err := exec.Command("id", "-u").Output()
	if err != nil || strings.TrimSpace(string(out)) != "0" {
		return "network namespaces need root"
	}
	return ""
}

// Unique returns prefix plus a short random suffix, for names that must not collide between test runs.
func Unique(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Add creates a namespace with its loopback up. It first removes what dead owners left behind (reap.Sweep), and
// records the namespace as this process's (reap.Claim), so that it goes, with every process inside, even when this
// process dies before Del.
func Add(name string) (*NS, error) {
	if _, err := reap.Sweep(nil); err != nil {
		return nil, fmt.Errorf("netns: leftovers of an earlier run: %w", err)
	}
	if err := ip("netns", "add", name); err != nil {
		return nil, err
	}
	if err := reap.Claim(reap.Netns, name, "", filepath.Base(os.Args[0])); err != nil {
		ip("netns", "del", name)
		return nil, err
	}
	n := &NS{Name: name}
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		n.Del()
		return nil, err
	}
	return n, nil
}

// Del removes the namespace and, with it, every link inside.
func (n *NS) Del() error {
	if err := ip("netns", "del", n.Name); err != nil {
		return err
	}
	reap.Release(reap.Netns, n.Name)
	return nil
}

// IP runs ip -n NAME args...
func (n *NS) IP(args ...string) error { return ip(append([]string{"-n", n.Name}, args...)...) }

// Command returns a command that runs inside the namespace (ip netns exec).
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Do runs fn on a thread switched into the namespace; sockets that fn opens belong to it.
func (n *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("netns: current: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(n.Name)
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.Name, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("netns %s: enter: %w", n.Name, err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: never hand it back to the runtime.
		panic(fmt.Sprintf("netns: cannot return from %s: %v", n.Name, err))
	}
	return ferr
}

// Handle opens the namespace for netlink.NewHandleAt and friends; close it after use.
func (n *NS) Handle() (netns.NsHandle, error) { return netns.GetFromName(n.Name) }

// Netlink opens a netlink handle that works in the namespace; close it after use.
func (n *NS) Netlink() (*netlink.Handle, error) {
	nh, err := n.Handle()
	if err != nil {
		return nil, fmt.Errorf("netns: %s: %w", n.Name, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, fmt.Errorf("netns: %s: netlink: %w", n.Name, err)
	}
	return h, nil
}

// Veth connects namespace a (link aName) with namespace b (link bName).
func Veth(a *NS, aName string, b *NS, bName string) error {
	tmp := Unique("vt")
	if err := ip("link", "add", tmp, "type", "veth", "peer", "name", tmp+"p"); err != nil {
		return err
	}
	steps := [][]string{
		{"link", "set", tmp, "netns", a.Name},
		{"link", "set", tmp + "p", "netns", b.Name},
		{"-n", a.Name, "link", "set", tmp, "name", aName},
		{"-n", b.Name, "link", "set", tmp + "p", "name", bName},
		{"-n", a.Name, "link", "set", aName, "up"},
		{"-n", b.Name, "link", "set", bName, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			ip("link", "del", tmp)
			return err
		}
	}
	return nil
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
