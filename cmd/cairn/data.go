package main

import "github.com/spf13/cobra"

// newDataCmd is a placeholder until its issue lands.
func newDataCmd() *cobra.Command {
	return &cobra.Command{Use: "data", Short: "not implemented yet", Hidden: true}
}
