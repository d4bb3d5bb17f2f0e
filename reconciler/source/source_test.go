package source

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runGit(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v %s", args, err, out)
	}
}

func TestFetchLocalPathReadsTree(t *testing.T) {
	repo := t.TempDir()
	runGit(t, repo, "init", "-q", "-b", "prod")
	os.MkdirAll(filepath.Join(repo, "manifests", "edge"), 0o755)
	os.WriteFile(filepath.Join(repo, "manifests", "edge", "a.yaml"), []byte("kind: X\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "policies.rego"), []byte("package x\n"), 0o644)
	os.WriteFile(filepath.Join(repo, "weights.bin"), []byte{0, 1, 2}, 0o644)
	runGit(t, repo, "add", "-A")
	runGit(t, repo, "commit", "-q", "-m", "first\n\nbody")

	s := New(Config{URL: repo, Branch: "prod", Dir: filepath.Join(t.TempDir(), "clone")})
	rev, changed, err := s.Fetch(context.Background())
	if err != nil || !changed {
		t.Fatalf("fetch: %v changed=%v", err, changed)
	}
	if rev.Message != "first" || len(rev.Commit) != 40 {
		t.Fatalf("revision = %+v", rev)
	}
	b, err := fs.ReadFile(rev.FS, "manifests/edge/a.yaml")
	if err != nil || string(b) != "kind: X\n" {
		t.Fatalf("read manifest: %q %v", b, err)
	}
	if _, err := fs.Stat(rev.FS, "weights.bin"); err == nil {
		t.Fatal("binary file read into the revision")
	}
	if _, err := fs.Stat(rev.FS, "policies.rego"); err != nil {
		t.Fatal(err)
	}
	// Nothing new: not changed.
	if _, changed, err := s.Fetch(context.Background()); err != nil || changed {
		t.Fatalf("second fetch: %v changed=%v", err, changed)
	}
	// A missing branch is an error that keeps the last commit.
	bad := New(Config{URL: repo, Branch: "nope", Dir: filepath.Join(t.TempDir(), "clone")})
	if _, _, err := bad.Fetch(context.Background()); err == nil {
		t.Fatal("fetch of a missing branch succeeded")
	}
}

func TestURLRedactsCredentials(t *testing.T) {
	s := New(Config{URL: "https://user:pw@git.example.com/r.git"})
	if got := s.URL(); got != "https://git.example.com/r.git" {
		t.Fatalf("URL = %s", got)
	}
}

// A changed URL or branch in the configuration takes effect on the next
// start over the same clone folder, and ancestry is read from the history.
func TestChangedURLAndBranchRepoint(t *testing.T) {
	mk := func(branch, file string) (string, []string) {
		repo := t.TempDir()
		runGit(t, repo, "init", "-q", "-b", branch)
		var commits []string
		for i := range 2 {
			os.WriteFile(filepath.Join(repo, file), []byte{byte('a' + i)}, 0o644)
			runGit(t, repo, "add", "-A")
			runGit(t, repo, "commit", "-q", "-m", file)
			out, _ := exec.Command("git", "-C", repo, "rev-parse", "HEAD").Output()
			commits = append(commits, strings.TrimSpace(string(out)))
		}
		return repo, commits
	}
	first, firstCommits := mk("main", "a.yaml")
	second, secondCommits := mk("prod", "b.yaml")
	dir := filepath.Join(t.TempDir(), "clone")
	s := New(Config{URL: first, Branch: "main", Dir: dir})
	rev, _, err := s.Fetch(context.Background())
	if err != nil || rev.Commit != firstCommits[1] {
		t.Fatalf("first fetch: %v %s", err, rev.Commit)
	}
	if ok, err := s.IsAncestor(firstCommits[0], firstCommits[1]); err != nil || !ok {
		t.Fatalf("parent is not an ancestor: %v %v", ok, err)
	}
	if ok, _ := s.IsAncestor(firstCommits[1], firstCommits[0]); ok {
		t.Fatal("child is an ancestor of its parent")
	}
	// Restart with another repository and branch over the same clone.
	s = New(Config{URL: second, Branch: "prod", Dir: dir})
	rev, err = s.Head(context.Background())
	if err != nil || rev.Commit != secondCommits[1] {
		t.Fatalf("after re-pointing: %v %s, want %s", err, rev.Commit, secondCommits[1])
	}
	if _, err := fs.Stat(rev.FS, "b.yaml"); err != nil {
		t.Fatalf("tree of the new repository: %v", err)
	}
	// Back to the first: the origin follows the configuration again.
	s = New(Config{URL: first, Branch: "main", Dir: dir})
	if rev, err := s.Head(context.Background()); err != nil || rev.Commit != firstCommits[1] {
		t.Fatalf("re-pointed back: %v %s", err, rev.Commit)
	}
}
