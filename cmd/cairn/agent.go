package main

import "github.com/spf13/cobra"

// newAgentCmd is a placeholder until its issue lands.
func newAgentCmd() *cobra.Command {
	return &cobra.Command{Use: "agent", Short: "not implemented yet", Hidden: true}
}
