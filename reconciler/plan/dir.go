package plan

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// DirOptions are the inputs of ForDir besides the checkout.
type DirOptions struct {
	// BaseRev is the revision to diff against; "" means the merge base with
	// the default branch. NoBase skips the diff.
	BaseRev string
	NoBase  bool
	// Inventory is the fleet (from a file or a server); nil means no targets.
	Inventory *fleet.Inventory
	// Live says Inventory came from a server (see Options.Live).
	Live      bool
	Inspector ArtifactInspector
	// ChunkIndexes makes download sizes those of delta updates
	// (Options.ChunkIndexes); nil counts whole layers.
	ChunkIndexes ChunkIndexer
	Datasets     DatasetChecker
	Now          time.Time
	// OnInput sees every policy input document (Options.OnInput).
	OnInput func(*policies.Input)
	// PolicyTimeout bounds the evaluation of one release's policies
	// (default policies.EvalTimeout); a release over it is denied.
	PolicyTimeout time.Duration
}

// ForDir plans the repository checked out at dir: it loads its manifests,
// compiles its policies (dir/policies and the built-in library), loads the
// base from Git and calls Compute. It is `cairn plan` without the printing.
// A base that cannot be loaded when none was asked for is noted, not fatal.
func ForDir(ctx context.Context, dir string, o DirOptions) (*Plan, error) {
	snap, err := manifests.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	eng, err := CompilePolicies(ctx, dir, policies.WithEvalTimeout(o.PolicyTimeout))
	if err != nil {
		return nil, err
	}
	opts := Options{Policies: eng, Inspector: o.Inspector, ChunkIndexes: o.ChunkIndexes, Datasets: o.Datasets, Live: o.Live, Now: o.Now, OnInput: o.OnInput}
	var notes []string
	if !o.NoBase {
		base, desc, err := LoadBase(ctx, dir, o.BaseRev)
		switch {
		case err != nil && o.BaseRev != "":
			return nil, err
		case err != nil:
			notes = append(notes, fmt.Sprintf("no base: %v", err))
		default:
			opts.Base, opts.BaseRev = base, desc
		}
	}
	p, err := Compute(ctx, snap, o.Inventory, opts)
	if err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, notes...)
	return p, nil
}

// CompilePolicies compiles the policies of the repository checked out at
// dir (policies.RepoFS: dir/policies, when it exists) and the built-in
// library, sandboxed as serve compiles them.
func CompilePolicies(ctx context.Context, dir string, opts ...policies.Option) (*policies.Engine, error) {
	repo, err := policies.RepoFS(os.DirFS(dir))
	if err != nil {
		return nil, err
	}
	return policies.Compile(ctx, repo, opts...)
}
