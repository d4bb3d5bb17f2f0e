package policies

import (
	"context"
	"fmt"
	"io"
	"io/fs"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestSummary counts the Rego tests Test ran.
type TestSummary struct {
	Passed, Failed, Errored, Skipped int
}

// OK reports whether every test passed.
func (s TestSummary) OK() bool { return s.Failed == 0 && s.Errored == 0 }

// TestOptions says where Test writes its report and which tests it runs.
type TestOptions struct {
	// Output receives the report, formatted like `opa test`; nil discards it.
	Output  io.Writer
	Verbose bool
	// Builtins includes the built-in library and its tests (the default for
	// `cairn policy test`); repo may then be nil.
	Builtins bool
}

// Test runs the Rego unit tests (rules named test_*) of the repository's
// policies folder repo (every *.rego including *_test.rego, with its data
// files; the built-in policies are loaded so repository tests may import
// them) and, with opts.Builtins, the tests of the built-in library, which run
// apart, without the repository's data, so they are hermetic.
func Test(ctx context.Context, repo fs.FS, opts TestOptions) (TestSummary, error) {
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	var sum TestSummary
	if repo != nil {
		mods, err := builtinModules(false)
		if err != nil {
			return sum, err
		}
		rm, err := readModules(repo, ".", "policies/", true)
		if err != nil {
			return sum, err
		}
		for k, m := range rm {
			mods[k] = m
		}
		data, err := readData(repo, ".")
		if err != nil {
			return sum, err
		}
		if opts.Builtins {
			fmt.Fprintln(out, "# repository policies")
		}
		if err := runTests(ctx, mods, data, out, opts.Verbose, &sum); err != nil {
			return sum, err
		}
	}
	if opts.Builtins {
		mods, err := builtinModules(true)
		if err != nil {
			return sum, err
		}
		if repo != nil {
			fmt.Fprintln(out, "\n# built-in library")
		}
		if err := runTests(ctx, mods, map[string]any{}, out, opts.Verbose, &sum); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

func runTests(ctx context.Context, mods map[string]*ast.Module, data map[string]any, out io.Writer, verbose bool, sum *TestSummary) error {
	ch, err := tester.NewRunner().SetCompiler(ast.NewCompiler().WithCapabilities(sandbox())).SetStore(inmem.NewFromObject(data)).Run(ctx, mods)
	if err != nil {
		return fmt.Errorf("run policy tests: %w", err)
	}
	fwd := make(chan *tester.Result)
	done := make(chan error, 1)
	go func() {
		done <- tester.PrettyReporter{Output: out, Verbose: verbose, FailureLine: true}.Report(fwd)
	}()
	for r := range ch {
		switch {
		case r.Skip:
			sum.Skipped++
		case r.Error != nil:
			sum.Errored++
		case r.Fail:
			sum.Failed++
		default:
			sum.Passed++
		}
		fwd <- r
	}
	close(fwd)
	if err := <-done; err != nil {
		return fmt.Errorf("report policy tests: %w", err)
	}
	return nil
}
