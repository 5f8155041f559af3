// Command hcloudsim serves a simulated Hetzner Cloud API for the lab, the tests and the demo. All of it lives in
// package hcloudsim; this main only wires the process to it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailcow-ha/mailcow-ha/cli"
	"github.com/mailcow-ha/mailcow-ha/hcloudsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := hcloudsim.Main(ctx, os.Args[1:], cli.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
