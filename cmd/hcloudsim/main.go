// Command hcloudsim serves a simulated Hetzner Cloud API for the lab, the tests and the demo. All of it lives in
// package hcloudsim, its command line in package cli; this main only wires the process to it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailcow-ha/mailcow-ha/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Hcloudsim(ctx, os.Args[1:], cli.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
