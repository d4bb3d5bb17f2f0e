package plan

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if fi.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func commitAll(t *testing.T, wt *git.Worktree, msg string) plumbing.Hash {
	t.Helper()
	if err := wt.AddWithOptions(&git.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@example", When: time.Unix(1, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestLoadBase: on a branch forked from main, the default base is the merge
// base, and the plan diffs the checkout against it.
func TestLoadBase(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "gitops") // the repository's manifests live in a subfolder
	repo, err := git.PlainInit(root, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := repo.Worktree()
	copyTree(t, "testdata/repos/fleet-base", dir)
	first := commitAll(t, wt, "base")
	// main is the default branch; work continues on a feature branch.
	if err := repo.Storer.SetReference(plumbing.NewHashReference("refs/heads/main", first)); err != nil {
		t.Fatal(err)
	}
	if err := wt.Checkout(&git.CheckoutOptions{Branch: "refs/heads/feature", Create: true}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(dir, "manifests"))
	copyTree(t, "testdata/repos/fleet", dir)
	commitAll(t, wt, "feature")

	base, desc, err := LoadBase(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(desc, first.String()[:7]) || !strings.Contains(desc, "merge base with main") {
		t.Errorf("desc = %q", desc)
	}
	if _, ok := base.Release("old-detector"); !ok {
		t.Error("base lacks old-detector")
	}

	p, err := ForDir(ctx, dir, DirOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range p.Releases {
		got[r.Name] = r.Change
	}
	if got["old-detector"] != Removed || got["pump-classifier-edge"] != Added || got["bearing-anomaly-orin"] != Changed {
		t.Errorf("changes = %v", got)
	}

	// An explicit revision; HEAD is the head itself: nothing changed.
	if _, desc, err = LoadBase(ctx, dir, "HEAD"); err != nil || !strings.Contains(desc, "HEAD") {
		t.Errorf("LoadBase HEAD: %q, %v", desc, err)
	}
	if _, _, err := LoadBase(ctx, dir, "no-such-rev"); err == nil {
		t.Error("unknown revision accepted")
	}

	// Not a Git repository: no base, no error.
	plain := t.TempDir()
	copyTree(t, "testdata/repos/fleet", plain)
	if b, _, err := LoadBase(ctx, plain, ""); err != nil || b != nil {
		t.Errorf("outside git: %v, %v", b, err)
	}
}
