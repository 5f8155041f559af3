// Command mailcow-ha-check is keepalived's vrrp_script: it asks the local agent for its verdict. It is a separate,
// small binary because keepalived runs it every second and a check should cost a few milliseconds; it does
// what `mailcow-ha check` does (package check).
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
