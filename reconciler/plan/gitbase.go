package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing/fstest"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cairn-dev/cairn/manifests"
)

// defaultBranches are tried in order to find the branch a pull request
// merges into when no revision is given.
var defaultBranches = []plumbing.ReferenceName{
	"refs/remotes/origin/HEAD",
	"refs/heads/main",
	"refs/heads/master",
	"refs/remotes/origin/main",
	"refs/remotes/origin/master",
}

// LoadBase loads the manifests of dir as they were at revision rev of the Git
// repository containing dir. An empty rev means the merge base of HEAD with
// the default branch (origin/HEAD, main or master), so a pull request branch
// is compared with where it forked. It returns the snapshot and a description
// of the base ("a1b2c3d (merge base with main)"). When dir is not in a Git
// repository, or the repository has no commit, and rev is empty, it returns a
// nil snapshot and no error: there is no base.
func LoadBase(ctx context.Context, dir, rev string) (*manifests.Snapshot, string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", fmt.Errorf("load base: %w", err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true})
	if errors.Is(err, git.ErrRepositoryNotExists) && rev == "" {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("load base: open git repository of %s: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, "", fmt.Errorf("load base: %w", err)
	}
	root := wt.Filesystem.Root()
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	sub, err := filepath.Rel(root, abs)
	if err != nil || strings.HasPrefix(sub, "..") {
		return nil, "", fmt.Errorf("load base: %s is outside the worktree %s", dir, root)
	}
	sub = filepath.ToSlash(sub)

	commit, desc, err := resolveBase(repo, rev)
	if err != nil || commit == nil {
		return nil, "", err
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, "", fmt.Errorf("load base %s: %w", desc, err)
	}
	if sub != "." {
		t, err := tree.Tree(sub)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return manifests.NewSnapshot(manifests.Objects{}), desc, nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("load base %s: %s: %w", desc, sub, err)
		}
		tree = t
	}
	fsys, err := treeFS(ctx, tree)
	if err != nil {
		return nil, "", fmt.Errorf("load base %s: %w", desc, err)
	}
	snap, err := manifests.Load(fsys)
	if err != nil {
		return nil, "", fmt.Errorf("load base %s: %w", desc, err)
	}
	return snap, desc, nil
}

// resolveBase finds the base commit: rev, or the merge base of HEAD with the
// default branch. A repository without commits has no base.
func resolveBase(repo *git.Repository, rev string) (*object.Commit, string, error) {
	if rev != "" {
		h, err := repo.ResolveRevision(plumbing.Revision(rev))
		if err != nil {
			return nil, "", fmt.Errorf("load base: resolve %s: %w", rev, err)
		}
		c, err := repo.CommitObject(*h)
		if err != nil {
			return nil, "", fmt.Errorf("load base: commit %s: %w", rev, err)
		}
		return c, fmt.Sprintf("%s (%s)", h.String()[:7], rev), nil
	}
	head, err := repo.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, "", nil // no commit yet
	}
	if err != nil {
		return nil, "", fmt.Errorf("load base: HEAD: %w", err)
	}
	headCommit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, "", fmt.Errorf("load base: HEAD commit: %w", err)
	}
	for _, name := range defaultBranches {
		ref, err := repo.Reference(name, true)
		if err != nil {
			continue
		}
		other, err := repo.CommitObject(ref.Hash())
		if err != nil {
			continue
		}
		bases, err := headCommit.MergeBase(other)
		if err != nil || len(bases) == 0 {
			continue
		}
		short := strings.TrimPrefix(strings.TrimPrefix(ref.Name().String(), "refs/heads/"), "refs/remotes/")
		return bases[0], fmt.Sprintf("%s (merge base with %s)", bases[0].Hash.String()[:7], short), nil
	}
	return headCommit, fmt.Sprintf("%s (HEAD)", headCommit.Hash.String()[:7]), nil
}

// treeFS reads the YAML files of a Git tree into an in-memory fs.FS, the
// only files manifests.Load reads.
func treeFS(ctx context.Context, tree *object.Tree) (fstest.MapFS, error) {
	fsys := fstest.MapFS{}
	err := tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if ext := path.Ext(f.Name); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		if f.Mode != filemode.Regular && f.Mode != filemode.Executable {
			return nil
		}
		if f.Size > manifests.MaxFileSize {
			fsys[f.Name] = &fstest.MapFile{Data: make([]byte, manifests.MaxFileSize+1)}
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		defer r.Close()
		b, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("read %s: %w", f.Name, err)
		}
		fsys[f.Name] = &fstest.MapFile{Data: b, Mode: 0o644}
		return nil
	})
	return fsys, err
}
