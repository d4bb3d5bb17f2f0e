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
// files) and, with opts.Builtins, of the built-in library.
func Test(ctx context.Context, repo fs.FS, opts TestOptions) (TestSummary, error) {
	mods := map[string]*ast.Module{}
	if opts.Builtins {
		b, err := builtinModules(true)
		if err != nil {
			return TestSummary{}, err
		}
		mods = b
	}
	if repo != nil {
		rm, err := readModules(repo, ".", "policies/", true)
		if err != nil {
			return TestSummary{}, err
		}
		for k, m := range rm {
			mods[k] = m
		}
	}
	data, err := readData(repo, ".")
	if err != nil {
		return TestSummary{}, err
	}
	ch, err := tester.NewRunner().SetStore(inmem.NewFromObject(data)).Run(ctx, mods)
	if err != nil {
		return TestSummary{}, fmt.Errorf("run policy tests: %w", err)
	}
	var sum TestSummary
	fwd := make(chan *tester.Result)
	done := make(chan error, 1)
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	go func() {
		done <- tester.PrettyReporter{Output: out, Verbose: opts.Verbose, FailureLine: true}.Report(fwd)
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
		return sum, fmt.Errorf("report policy tests: %w", err)
	}
	return sum, nil
}
