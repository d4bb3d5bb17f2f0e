package main

import "github.com/spf13/cobra"

// newRolloutCmd is a placeholder until its issue lands.
func newRolloutCmd() *cobra.Command {
	return &cobra.Command{Use: "rollout", Short: "not implemented yet", Hidden: true}
}
