package reconciler

import "testing"

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:s3cret@git.example/repo.git": "https://user:xxxxx@git.example/repo.git",
		"https://user:p@ss@word@git.example/r.git": "https://user:xxxxx@git.example/r.git",
		"https://ghp_TOKEN@github.com/o/r.git":     "https://redacted@github.com/o/r.git",
		"ssh://git@git.example/repo.git":           "ssh://git@git.example/repo.git",
		"/srv/git/repo":                            "/srv/git/repo",
		"file:///srv/git/repo":                     "file:///srv/git/repo",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
