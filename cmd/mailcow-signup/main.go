// Command mailcow-signup serves the self-service sign-up portal; all of it lives in package signup.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mailcow-ha/mailcow-ha/signup"
	"github.com/mailcow-ha/mailcow-ha/stdio"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := signup.Main(ctx, os.Args[1:], stdio.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
