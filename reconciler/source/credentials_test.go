package source

import (
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A token in the repository URL (a password holding '@') authenticates the
// fetch but never reaches the clone's config file, which stays in a 0700
// folder; redaction hides the whole password.
func TestURLCredentialsKeptOutOfClone(t *testing.T) {
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Skip("git-http-backend not installed")
	}
	root := t.TempDir()
	work := t.TempDir()
	runGit(t, work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "a.yaml"), []byte("a: 1\n"), 0o644)
	runGit(t, work, "add", "-A")
	runGit(t, work, "commit", "-q", "-m", "a")
	if out, err := exec.Command("git", "clone", "-q", "--bare", work, filepath.Join(root, "repo.git")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	const pass = "p@ss@word"
	h := &cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	var sawAuth bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "user" || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		sawAuth = true
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	raw := strings.Replace(srv.URL, "http://", "http://user:"+pass+"@", 1) + "/repo.git"
	dir := filepath.Join(t.TempDir(), "source")
	s := New(Config{URL: raw, Dir: dir})
	if _, _, err := s.Fetch(context.Background()); err != nil {
		t.Fatalf("fetch with URL credentials: %v", err)
	}
	if !sawAuth {
		t.Fatal("the fetch sent no credentials")
	}
	if got, want := s.URL(), srv.URL+"/repo.git"; got != want {
		t.Fatalf("URL = %s, want %s", got, want)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "ss@word") || strings.Contains(string(cfg), "user:") {
		t.Fatalf("clone config holds the credential:\n%s", cfg)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("clone folder mode = %v, %v, want 0700", fi.Mode().Perm(), err)
	}
	for in, want := range map[string]string{
		raw:                                "http://user:xxxxx@" + strings.TrimPrefix(srv.URL, "http://") + "/repo.git",
		"https://ghp_TOKEN@github.com/o/r": "https://redacted@github.com/o/r",
		"ssh://git@git.example/repo.git":   "ssh://git@git.example/repo.git",
		"/srv/git/repo":                    "/srv/git/repo",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}
