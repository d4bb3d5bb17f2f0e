package main

import (
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/policies"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Work with Rego admission policies",
	}
	var verbose, noBuiltins bool
	test := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run the Rego unit tests of the repository's policies and of the built-in library",
		Long: "Run the Rego tests (rules named test_*) of DIR/policies (DIR defaults to .; the same folder cairn plan and\n" +
			"serve read) and of cairn's built-in policy library, with the data files (*.json, *.yaml) of that folder.\n" +
			"Prints results like `opa test` and exits 1 when a test fails.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			repo, err := policyDir(dir)
			if err != nil {
				return err
			}
			sum, err := policies.Test(cmd.Context(), repo, policies.TestOptions{
				Output: cmd.OutOrStdout(), Verbose: verbose, Builtins: !noBuiltins,
			})
			if err != nil {
				return fmt.Errorf("policy test %s: %w", dir, err)
			}
			if !sum.OK() {
				return &exitError{code: 1, msg: fmt.Sprintf("policy test: %d failed, %d errors", sum.Failed, sum.Errored)}
			}
			return nil
		},
	}
	test.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test, not only failures")
	test.Flags().BoolVar(&noBuiltins, "no-builtins", false, "run only the repository's tests")
	cmd.AddCommand(test)
	return cmd
}

// policyDir finds the policies of the repository at dir (policies.RepoFS);
// nil when there are none.
func policyDir(dir string) (fs.FS, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("policy test: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("policy test: %s is not a directory", dir)
	}
	repo, err := policies.RepoFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("policy test %s: %w", dir, err)
	}
	return repo, nil
}
