package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
)

// postfixContainer is postfix-mailcow's container on every node.
const postfixContainer = "mailcowdockerized-postfix-mailcow-1"

// HoldDelivery makes the node's postfix keep accepting mail but hold it in its queue (on the Volume) instead of
// handing it to dovecot: defer_transports = lmtp, then a reload. A new container (the next MASTER's) starts without
// it, as after a failover.
func (n *Node) HoldDelivery(ctx context.Context, hold bool) error {
	v := ""
	if hold {
		v = "lmtp"
	}
	if _, err := n.execPostfix(ctx, "postconf", "-e", "defer_transports = "+v); err != nil {
		return err
	}
	_, err := n.execPostfix(ctx, "postfix", "reload")
	return err
}

// Queued counts the messages in the node's postfix queue (postqueue -j: one JSON object per message).
func (n *Node) Queued(ctx context.Context) (int, error) {
	out, err := n.execPostfix(ctx, "postqueue", "-j")
	if err != nil {
		return 0, err
	}
	count := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m struct {
			QueueID string `json:"queue_id"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil || m.QueueID == "" {
			return 0, fmt.Errorf("lab: %s: postqueue -j printed %q", n.Name, line)
		}
		count++
	}
	return count, nil
}

// execPostfix runs argv in the node's postfix container through the Engine API and returns its standard output; a
// non-zero exit is an error with its standard error.
func (n *Node) execPostfix(ctx context.Context, argv ...string) (string, error) {
	c, err := deploy.Connect(n.Docker())
	if err != nil {
		return "", err
	}
	defer c.Close()
	ex, err := c.ContainerExecCreate(ctx, postfixContainer, container.ExecOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return "", fmt.Errorf("lab: %s: exec %s: %w", n.Name, argv[0], err)
	}
	att, err := c.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", fmt.Errorf("lab: %s: exec %s: %w", n.Name, argv[0], err)
	}
	defer att.Close()
	var stdout, stderr strings.Builder
	if _, err := stdcopy.StdCopy(&stdout, &stderr, att.Reader); err != nil {
		return "", fmt.Errorf("lab: %s: exec %s: %w", n.Name, argv[0], err)
	}
	ins, err := c.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return "", fmt.Errorf("lab: %s: exec %s: %w", n.Name, argv[0], err)
	}
	if ins.ExitCode != 0 {
		return stdout.String(), fmt.Errorf("lab: %s: %s exited %d: %s", n.Name, strings.Join(argv, " "), ins.ExitCode, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}
