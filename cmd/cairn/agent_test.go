package main

import (
	"testing"

	"github.com/spf13/pflag"

	"github.com/cairn-dev/cairn/fleet/agent/agentcli"
)

// TestAgentFlagsMatchCairnAgent: `cairn agent` takes every flag of
// cairn-agent, with the same default, so either runs a device.
func TestAgentFlagsMatchCairnAgent(t *testing.T) {
	cairn := newAgentCmd().Flags()
	n := 0
	agentcli.Command("cairn-agent", "dev").Flags().VisitAll(func(f *pflag.Flag) {
		n++
		g := cairn.Lookup(f.Name)
		if g == nil {
			t.Errorf("cairn agent has no --%s", f.Name)
			return
		}
		if g.DefValue != f.DefValue || g.Value.Type() != f.Value.Type() {
			t.Errorf("--%s: cairn agent %s %q, cairn-agent %s %q", f.Name, g.Value.Type(), g.DefValue, f.Value.Type(), f.DefValue)
		}
	})
	if n < 10 {
		t.Fatalf("cairn-agent has %d flags", n)
	}
}
