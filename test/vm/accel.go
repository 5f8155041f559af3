package vm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// QEMU's accelerators as arguments. TCG emulates and works everywhere (tb-size=256 gives its translation cache room
// for a whole Debian boot; the plain qemu64 model, which Debian's x86-64 baseline needs no more than, brought one
// guest to its agent in 186.1 s where "max", with every extension TCG emulates, took 212.3 s); KVM runs the guest
// on the host's CPU.
var (
	TCG = []string{"-accel", "tcg,tb-size=256", "-cpu", "qemu64"}
	KVM = []string{"-accel", "kvm", "-cpu", "host"}
)

// Accel picks the accelerator: KVM when a guest really runs with it, TCG otherwise, and says why. choice is
// MAILCOW_HA_VM_ACCEL ("kvm" or "tcg" forces one, "" probes).
func Accel(ctx context.Context, kernel, choice string) ([]string, string) {
	switch choice {
	case "kvm":
		return KVM, "KVM (MAILCOW_HA_VM_ACCEL=kvm)"
	case "tcg":
		return TCG, "TCG (MAILCOW_HA_VM_ACCEL=tcg)"
	}
	if err := ProbeBoot(ctx, KVM, kernel, 8*time.Second); err != nil {
		return TCG, "TCG: KVM does not run a guest here (" + err.Error() + ")"
	}
	return KVM, "KVM: a probe guest printed its first kernel line"
}

// ProbeBoot boots kernel with the given accelerator (no disk, no root) and waits up to wait for the kernel's first
// line on the serial console. /dev/kvm alone proves nothing: on our machines it opens and even creates a VM and a
// vCPU, but a guest never prints a line.
func ProbeBoot(ctx context.Context, accel []string, kernel string, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	args := append(append([]string{}, accel...), "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot", "-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent", "-serial", "stdio")
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...) // ended by its PID when ctx ends
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	found := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Linux version") {
			found = true
			break
		}
	}
	cancel()
	cmd.Wait()
	if found {
		return nil
	}
	if msg := strings.TrimSpace(stderr.String()); msg != "" && !strings.Contains(msg, "terminating on signal") {
		return fmt.Errorf("%s", firstLine(msg)) // QEMU names itself
	}
	return fmt.Errorf("no kernel line within %s", wait)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
