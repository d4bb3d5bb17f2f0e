package main

import "github.com/spf13/cobra"

// newPolicyCmd is a placeholder until its issue lands.
func newPolicyCmd() *cobra.Command {
	return &cobra.Command{Use: "policy", Short: "not implemented yet", Hidden: true}
}
