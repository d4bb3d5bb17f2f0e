package main

import "github.com/spf13/cobra"

// newValidateCmd is a placeholder until its issue lands.
func newValidateCmd() *cobra.Command {
	return &cobra.Command{Use: "validate", Short: "not implemented yet", Hidden: true}
}
