package main

import "github.com/spf13/cobra"

// newGetCmd is a placeholder until its issue lands.
func newGetCmd() *cobra.Command {
	return &cobra.Command{Use: "get", Short: "not implemented yet", Hidden: true}
}

// newDescribeCmd is a placeholder until its issue lands.
func newDescribeCmd() *cobra.Command {
	return &cobra.Command{Use: "describe", Short: "not implemented yet", Hidden: true}
}
