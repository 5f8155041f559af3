// Command mailcow-stub plays one of mailcow's services for the tests and the lab (see package mailcowstub). It
// is built statically into a FROM-scratch image.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailcow-ha/mailcow-ha/mailcowstub"
	"github.com/mailcow-ha/mailcow-ha/stdio"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mailcowstub.Main(ctx, os.Args[1:], stdio.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
