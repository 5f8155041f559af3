package rootfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/firewall"
	"github.com/mailcow-ha/mailcow-ha/lab/netns"
)

// checkMetadataChain runs in TestFirewall's node namespace, whose firewall is loaded and whose metadata service
// (169.254.169.254:80, on the public side) answers. The agent's call keeps the service to one control group: a
// process in that group connects, every other process of the node (a shell, and the test itself, standing for a
// container in the host's network namespace such as netfilter-mailcow) is refused, and the chain's counter moves.
// A second call (a restarted agent) replaces the rule rather than adding one.
func checkMetadataChain(t *testing.T, node, noTable *netns.NS, nft string) {
	t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("nsenter is not installed (Debian package util-linux)")
	}
	// nsenter, not ip netns exec, which mounts a sysfs of its own where nft would not find the group.
	inNode := []string{nsenter, "--net=/run/netns/" + node.Name, nft}
	cg, err := firewall.Group("/" + netns.Unique("mailcow-ha-test-md"))
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy to place a process in: %v", err)
	}
	if err := os.Mkdir(cg.Dir(), 0o755); err != nil {
		t.Skipf("cannot make a control group: %v", err)
	}
	t.Cleanup(func() {
		// The shell that joined it has exited; the kernel may take a moment to let the group go.
		for i := 0; i < 50 && os.Remove(cg.Dir()) != nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	ctx := context.Background()
	if applied, err := firewall.MetadataOnly(ctx, []string{nsenter, "--net=/run/netns/" + noTable.Name, nft}, cg); applied || err != nil {
		t.Fatalf("no table: applied %v, %v", applied, err)
	}
	if _, err := firewall.MetadataOnly(ctx, inNode, firewall.Cgroup{Path: "x", Level: 0}); err == nil {
		t.Error("the root level was accepted: every process would match")
	}
	for range 2 {
		if applied, err := firewall.MetadataOnly(ctx, inNode, cg); !applied || err != nil {
			t.Fatalf("metadata chain: applied %v, %v", applied, err)
		}
	}
	out, err := exec.Command(inNode[0], append(inNode[1:], "list", "chain", "inet", firewall.Table, firewall.Chain)...).CombinedOutput()
	if err != nil || strings.Count(string(out), "socket cgroupv2") != 1 {
		t.Fatalf("after two calls the chain must hold one group's rule (%v):\n%s", err, out)
	}
	connect := func(join bool) error {
		script := "exec 3<>/dev/tcp/169.254.169.254/80"
		if join {
			script = "echo $$ > " + cg.Dir() + "/cgroup.procs && " + script
		}
		out, err := exec.Command(nsenter, "--net=/run/netns/"+node.Name, "bash", "-c", script).CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := connect(true); err != nil {
		t.Errorf("a process of the agent's group was refused by the metadata service: %v", err)
	}
	if err := connect(false); err == nil {
		t.Error("a process of another group reached the metadata service")
	}
	if err := dialFrom(node, "203.0.113.10", "169.254.169.254:80"); err == nil {
		t.Error("the test's own process (another group) reached the metadata service")
	}
	out, _ = exec.Command(inNode[0], append(inNode[1:], "list", "chain", "inet", firewall.Table, firewall.Chain)...).CombinedOutput()
	if line := lineWith(string(out), `"not the agent: metadata service"`); line == "" || strings.Contains(line, "counter packets 0 bytes 0") {
		t.Errorf("the metadata chain's reject counter did not move:\n%s", out)
	}
}
