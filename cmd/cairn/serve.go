package main

import "github.com/spf13/cobra"

// newServeCmd is a placeholder until its issue lands.
func newServeCmd() *cobra.Command {
	return &cobra.Command{Use: "serve", Short: "not implemented yet", Hidden: true}
}
