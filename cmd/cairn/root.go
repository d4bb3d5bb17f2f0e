package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "cairn",
		Short:         "GitOps for machine-learning models and datasets",
		Long:          "cairn reconciles Kubernetes clusters and edge-device fleets with the model and dataset versions a Git repository declares.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newValidateCmd(),
		newModelCmd(),
		newDataCmd(),
		newPolicyCmd(),
		newPlanCmd(),
		newServeCmd(),
		newAgentCmd(),
		newGetCmd(),
		newDescribeCmd(),
		newRolloutCmd(),
		newLineageCmd(),
		newRegistryCmd(),
	)
	return root
}

// exitError carries an exit code other than 1; an empty message prints nothing
// (the verb has already written its own errors to stderr).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }
func (e *exitError) ExitCode() int { return e.code }
