package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/errdef"
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
		newTargetCmd(),
		newLineageCmd(),
		newRegistryCmd(),
	)
	addCAFlag(root)
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

// exitCode is the process status for a verb's error: an exitError's code, 2
// for a policy denial (errdef.ErrPolicyDenied), else 1.
func exitCode(err error) int {
	var ec interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, errdef.ErrPolicyDenied):
		return 2
	}
	return 1
}
