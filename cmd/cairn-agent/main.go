// Command cairn-agent is the device agent alone: the small binary for
// Jetsons, Raspberry Pis and gateways. It takes the flags of `cairn agent`
// and links only the agent and the model puller (fleet/agent/agentcli).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-dev/cairn/fleet/agent/agentcli"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := agentcli.Command("cairn-agent", version)
	cmd.Version = version
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cairn-agent: "+err.Error())
		os.Exit(1)
	}
}
