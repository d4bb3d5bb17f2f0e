package main

import "github.com/spf13/cobra"

// newLineageCmd is a placeholder until its issue lands.
func newLineageCmd() *cobra.Command {
	return &cobra.Command{Use: "lineage", Short: "not implemented yet", Hidden: true}
}
