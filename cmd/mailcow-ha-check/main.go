// Command mailcow-ha-check is the check watcher that the agent runs (--watch: it asks the local agent for its
// verdict every second and keeps keepalived's track file), and the operator's one-shot check. It is a separate,
// small binary that does what `mailcow-ha check` does (package check).
package main

import (
	"context"
	"os"

	"github.com/mailcow-ha/mailcow-ha/agent/check"
	"github.com/mailcow-ha/mailcow-ha/stdio"
)

func main() {
	os.Exit(check.Main(context.Background(), os.Args[1:], stdio.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}))
}
