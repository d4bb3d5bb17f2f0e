package main

import "github.com/spf13/cobra"

// newPlanCmd is a placeholder until its issue lands.
func newPlanCmd() *cobra.Command {
	return &cobra.Command{Use: "plan", Short: "not implemented yet", Hidden: true}
}
