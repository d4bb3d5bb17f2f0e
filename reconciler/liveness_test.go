package reconciler

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// hangingGitServer is gitServer whose HTTP server, once hang is set,
// accepts every request and never answers (until the client gives up).
func hangingGitServer(t *testing.T) (url, work string, hang *atomic.Bool) {
	t.Helper()
	if _, err := os.Stat(gitBackend); err != nil {
		t.Skip("git http-backend not installed")
	}
	root := t.TempDir()
	run(t, root, "git", "init", "-q", "--bare", "-b", "main", "repo.git")
	run(t, filepath.Join(root, "repo.git"), "git", "config", "http.receivepack", "true")
	backend := &cgi.Handler{Path: gitBackend, Root: "/git", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	hang = &atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() && r.Header.Get("X-Test-Push") == "" {
			<-r.Context().Done() // accepted, never answered
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	url = srv.URL + "/git/repo.git"
	work = filepath.Join(t.TempDir(), "work")
	run(t, "", "git", "clone", "-q", url, work)
	run(t, work, "git", "checkout", "-q", "-b", "main")
	run(t, work, "git", "config", "http.extraHeader", "X-Test-Push: 1")
	return url, work, hang
}

// TestHangingGitServer: while the git server accepts and never answers,
// /healthz, /api/v1/source and /api/v1/targets answer within 1 s and the
// reconcile loop goes on (a target enrolled meanwhile gets its desired
// state); then the fetch times out and the source says Ready=False with the
// reason.
func TestHangingGitServer(t *testing.T) {
	url, work, hang := hangingGitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	const fetchTimeout = 3 * time.Second
	base := startServe(t, Config{Repo: url, Interval: Duration(time.Hour), FetchTimeout: Duration(fetchTimeout),
		EnrollToken: "enroll-secret", AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond)})
	c := fleet.NewClient(base)
	a := enroll(t, c, "dev-a")
	waitDigest(t, c, a, digestOf(1), 10*time.Second)

	hang.Store(true)
	commitPush(t, work, manifestsFor(2), "v2")
	hook(t, base, "")
	hungAt := time.Now()

	get := func(path string) (*http.Response, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer admin-secret")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("GET %s while the git server hangs: %v (after %s)", path, err, took)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return resp, took
	}
	var slowest time.Duration
	b := enroll(t, c, "dev-b")
	enrolledB := false
	for time.Since(hungAt) < fetchTimeout+time.Second {
		for _, p := range []string{"/healthz", "/api/v1/source", "/api/v1/targets"} {
			resp, took := get(p)
			resp.Body.Close()
			slowest = max(slowest, took)
		}
		if !enrolledB {
			ds, changed, err := c.Desired(context.Background(), b.ID, b.Credential, "", 100*time.Millisecond)
			enrolledB = err == nil && changed && len(ds.Models) == 1 && ds.Models[0].Digest == digestOf(1)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("slowest API answer while the fetch hung: %s", slowest)
	if !enrolledB {
		t.Error("a target enrolled while the fetch hung got no desired state: the reconcile loop waited for the fetch")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := get("/api/v1/source")
		var si fleet.SourceInfo
		err := json.NewDecoder(resp.Body).Decode(&si)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var ready *fleet.Condition
		for i := range si.Conditions {
			if si.Conditions[i].Type == TypeReady {
				ready = &si.Conditions[i]
			}
		}
		if ready != nil && ready.Status == "False" {
			if ready.Reason != ReasonFetchFailed || !strings.Contains(ready.Message, "no answer within "+fetchTimeout.String()) {
				t.Fatalf("Ready=False with %s: %q; want %s and the timeout", ready.Reason, ready.Message, ReasonFetchFailed)
			}
			if si.Admitted == "" || si.Admitted != si.Commit {
				t.Errorf("source %+v: want the admitted commit kept", si)
			}
			t.Logf("fetch failed after %s: %s", time.Since(hungAt).Round(100*time.Millisecond), ready.Message)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("source never went Ready=False after the fetch hung: %+v", si.Conditions)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
