// Command cairn is the one binary of cairn: every verb parses its flags and
// calls a package.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		code := exitCode(err)
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "cairn: "+msg)
		}
		os.Exit(code)
	}
}
