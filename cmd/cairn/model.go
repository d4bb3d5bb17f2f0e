package main

import "github.com/spf13/cobra"

// newModelCmd is a placeholder until its issue lands.
func newModelCmd() *cobra.Command {
	return &cobra.Command{Use: "model", Short: "not implemented yet", Hidden: true}
}
