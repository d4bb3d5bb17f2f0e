package reconciler

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/notify"
)

// Through cairn serve, each admitted commit gets a GitHub commit status
// for its release's rollout: pending while it rolls out, success once the
// target is healthy on it, failure when the target fails it.
func TestCommitStatusesThroughServe(t *testing.T) {
	type status struct{ sha, state, context, desc string }
	var mu sync.Mutex
	var got []status
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sha, ok := strings.CutPrefix(r.URL.Path, "/api/v3/repos/acme/models/statuses/")
		var b map[string]string
		body, _ := io.ReadAll(r.Body)
		if !ok || r.Header.Get("Authorization") != "Bearer ghp_test" || json.Unmarshal(body, &b) != nil {
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, status{sha, b["state"], b["context"], b["description"]})
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()
	token := filepath.Join(t.TempDir(), "github-token")
	os.WriteFile(token, []byte("ghp_test\n"), 0o600)

	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	sha := func() string {
		out, err := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	sha1 := sha()
	cfg := Config{Repo: url, Interval: Duration(200 * time.Millisecond), EnrollToken: "enroll-secret", AdminToken: "admin-secret",
		ReconcileInterval: Duration(200 * time.Millisecond), AlertBackoff: Duration(50 * time.Millisecond),
		CommitStatuses: []notify.StatusProvider{{Provider: "github", Address: api.URL + "/api/v3", Repository: "acme/models", TokenFile: token}}}
	base := startServe(t, cfg)
	c := fleet.NewClient(base)
	er := enroll(t, c, "dev-a")
	report := func(n int, phase string) {
		t.Helper()
		waitDigest(t, c, er, digestOf(n), 10*time.Second)
		if err := c.ReportStatus(context.Background(), er.ID, er.Credential, fleet.StatusReport{Releases: []fleet.ReleaseStatus{
			{Release: "r", Phase: phase, Digest: digestOf(n), Desired: digestOf(n), Message: "test " + phase}}}); err != nil {
			t.Fatal(err)
		}
	}
	last := func(sha string) (status, []string) {
		mu.Lock()
		defer mu.Unlock()
		var s status
		var states []string
		for _, g := range got {
			if g.sha == sha {
				s = g
				states = append(states, g.state)
			}
		}
		return s, states
	}
	wait := func(sha, state string) status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s, states := last(sha)
			if s.state == state {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("commit %s: statuses %v, want %s last", sha[:7], states, state)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait(sha1, "pending")
	report(1, fleet.PhaseHealthy)
	s := wait(sha1, "success")
	if s.context != "cairn/r" || !strings.HasPrefix(s.desc, "RolloutSucceeded") {
		t.Fatalf("success status %+v", s)
	}

	commitPush(t, work, manifestsFor(2), "v2")
	sha2 := sha()
	wait(sha2, "pending")
	report(2, fleet.PhaseFailed)
	s = wait(sha2, "failure")
	if s.context != "cairn/r" {
		t.Fatalf("failure status %+v", s)
	}
	_, states1 := last(sha1)
	_, states2 := last(sha2)
	if states1[len(states1)-1] != "success" {
		t.Fatalf("v1's statuses %v changed after its rollout", states1)
	}
	t.Logf("v1 %s: %v; v2 %s: %v (last: %s)", sha1[:7], states1, sha2[:7], states2, s.desc)
}
