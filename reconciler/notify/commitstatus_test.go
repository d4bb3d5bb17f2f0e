package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/manifests"
)

const (
	shaA = "0123456789abcdef0123456789abcdef01234567"
	shaB = "89abcdef0123456789abcdef0123456789abcdef"
)

func TestCommitState(t *testing.T) {
	for _, tc := range []struct {
		event          string
		github, gitlab string // "" = no status
	}{
		{manifests.EventReleaseAdmitted, "pending", "pending"},
		{manifests.EventRolloutStarted, "pending", "running"},
		{manifests.EventWaveStarted, "pending", "running"},
		{manifests.EventRolloutPaused, "pending", "pending"},
		{manifests.EventRolloutResumed, "pending", "running"},
		{manifests.EventRolloutRetried, "pending", "running"},
		{manifests.EventRolloutDone, "success", "success"},
		{manifests.EventRolloutFailed, "failure", "failed"},
		{manifests.EventRolledBack, "failure", "failed"},
		{manifests.EventPolicyDenied, "failure", "failed"},
		{manifests.EventRolloutAborted, "error", "canceled"},
		{manifests.EventRolloutSuperseded, "error", "canceled"},
		{manifests.EventCommitRejected, "error", "failed"},
		{manifests.EventTargetOffline, "", ""},
		{manifests.EventDriftDetected, "", ""},
		{manifests.EventCommandIgnored, "", ""},
		{manifests.EventReleaseRemoved, "", ""},
	} {
		for provider, want := range map[string]string{ProviderGitHub: tc.github, ProviderGitLab: tc.gitlab} {
			got, ok := commitState(provider, fleet.Event{Type: tc.event})
			if got != want || ok != (want != "") {
				t.Errorf("%s %s: got %q %v, want %q", provider, tc.event, got, ok, want)
			}
		}
	}
}

func TestStatusProviderCheck(t *testing.T) {
	for _, tc := range []struct {
		in      StatusProvider
		address string
		err     string
	}{
		{StatusProvider{Provider: "github", Repository: "acme/models", TokenFile: "t"}, "https://api.github.com", ""},
		{StatusProvider{Provider: "github", Repository: "acme/models", TokenFile: "t", Address: "https://ghe.acme/api/v3/"}, "https://ghe.acme/api/v3", ""},
		{StatusProvider{Provider: "gitlab", Repository: "group/sub/project", TokenFile: "t"}, "https://gitlab.com/api/v4", ""},
		{StatusProvider{Provider: "gitlab", Repository: "42", TokenFile: "t", Address: "http://127.0.0.1:8080/api/v4"}, "http://127.0.0.1:8080/api/v4", ""},
		{StatusProvider{Provider: "github", Repository: "models", TokenFile: "t"}, "", "want owner/name"},
		{StatusProvider{Provider: "github", Repository: "acme/models"}, "", "tokenFile is required"},
		{StatusProvider{Provider: "gitlab", TokenFile: "t"}, "", "project id"},
		{StatusProvider{Provider: "bitbucket", Repository: "a/b", TokenFile: "t"}, "", "want github or gitlab"},
		{StatusProvider{Provider: "gitlab", Repository: "1", TokenFile: "t", Address: "gitlab.acme"}, "", "want an http(s) URL"},
	} {
		p := tc.in
		err := p.Check()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%+v: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%+v: error %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (p.Address != tc.address || p.Name != p.Provider):
			t.Errorf("%+v: address %q name %q", tc.in, p.Address, p.Name)
		}
	}
}

// statusRequest is what a fake provider API received.
type statusRequest struct {
	path, auth, delivery string
	body                 map[string]string
}

// statusAPI is a GitHub or GitLab status endpoint on loopback: it refuses
// every request with 500 while failing is set, then accepts and records.
type statusAPI struct {
	*httptest.Server
	failing  atomic.Bool
	refused  atomic.Int64
	mu       sync.Mutex
	accepted []statusRequest
	states   map[string]string // GitLab: state per sha and name, to refuse a transition to the same state
}

func newStatusAPI(t *testing.T, gitlab bool) *statusAPI {
	a := &statusAPI{states: map[string]string{}}
	a.failing.Store(true)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.failing.Load() {
			a.refused.Add(1)
			http.Error(w, `{"message":"boom"}`, http.StatusInternalServerError)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var body map[string]string
		if err := json.Unmarshal(b, &body); err != nil || r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		auth := r.Header.Get("Authorization")
		if gitlab {
			auth = r.Header.Get("PRIVATE-TOKEN")
			key := r.URL.EscapedPath() + " " + body["name"]
			if a.states[key] == body["state"] {
				http.Error(w, `{"message":"Cannot transition status via :run from :running"}`, http.StatusBadRequest)
				return
			}
			a.states[key] = body["state"]
		} else if r.Header.Get("Accept") != "application/vnd.github+json" {
			http.Error(w, "accept", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.accepted = append(a.accepted, statusRequest{path: r.URL.EscapedPath(), auth: auth, delivery: r.Header.Get("X-Cairn-Delivery"), body: body})
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *statusAPI) requests() []statusRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]statusRequest(nil), a.accepted...)
}

// Commit statuses go through the outbox: a provider API answering 500 keeps
// them pending across a restart of the notifier; once it answers 201 each
// delivery id is accepted exactly once, with the path, token and body of
// the provider's API; a status superseded while pending (pending, then
// success, of one commit and release) is never sent after its successor.
func TestCommitStatusesThroughOutbox(t *testing.T) {
	for name, dsn := range testenv.Databases("commitstatus") {
		t.Run(name, func(t *testing.T) { testCommitStatuses(t, dsn(t)) })
	}
}

func testCommitStatuses(t *testing.T, dsn string) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gh, gl := newStatusAPI(t, false), newStatusAPI(t, true)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gh-token"), []byte("ghp_secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "gl-token"), []byte("glpat-secret"), 0o600)
	providers := []StatusProvider{
		{Provider: ProviderGitHub, Address: gh.URL + "/api/v3", Repository: "acme/models", TokenFile: filepath.Join(dir, "gh-token"), TargetURL: "https://cairn.acme/releases"},
		{Provider: ProviderGitLab, Address: gl.URL + "/api/v4/", Repository: "ml/edge-models", TokenFile: filepath.Join(dir, "gl-token")},
	}
	for i := range providers {
		if err := providers[i].Check(); err != nil {
			t.Fatal(err)
		}
	}
	start := func() (*Notifier, context.CancelFunc) {
		o, err := OpenOutbox(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		// A short client timeout keeps the claim of a delivery in flight
		// at the restart (twice the timeout) short.
		n := New(Options{Outbox: o, Tick: 10 * time.Millisecond, Statuses: providers, Client: &http.Client{Timeout: 500 * time.Millisecond}})
		rctx, cancel := context.WithCancel(ctx)
		go n.Run(rctx, func() bool { return true })
		return n, cancel
	}
	n, stop := start()
	n.Send(nil, []fleet.Event{
		{ID: 1, Type: manifests.EventRolloutStarted, Release: "edge", Commit: shaA, Message: "wave 1 of 2: 1 target"},
		{ID: 2, Type: manifests.EventTargetOffline, Target: "dev-a", Commit: shaA, Message: "no contact"}, // no status
		{ID: 3, Type: manifests.EventRolloutFailed, Release: "gpu", Commit: shaB, Message: "health gate error_rate 0.2 > 0.01"},
		{ID: 4, Type: manifests.EventRolledBack, Release: "", Message: "no commit"}, // no status
	})
	time.Sleep(300 * time.Millisecond)
	stop() // restart while the APIs still fail
	n, stop = start()
	defer stop()
	n.Send(nil, []fleet.Event{{ID: 5, Type: manifests.EventRolloutDone, Release: "edge", Commit: shaA, Message: "2 of 2 targets healthy"}})
	time.Sleep(300 * time.Millisecond)
	gh.failing.Store(false)
	gl.failing.Store(false)
	waitDelivered := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			pending, err := n.opts.Outbox.List(ctx, StatePending)
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d deliveries still pending: %+v", len(pending), pending[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitDelivered()
	if gh.refused.Load() == 0 || gl.refused.Load() == 0 {
		t.Fatalf("refused %d (github), %d (gitlab): the 500s were never tried", gh.refused.Load(), gl.refused.Load())
	}
	type want struct{ path, state, context, desc string }
	check := func(api *statusAPI, auth, ctxField string, wants []want) {
		t.Helper()
		got := api.requests()
		seen := map[string]int{}
		for _, r := range got {
			seen[r.delivery]++
		}
		for id, c := range seen {
			if c != 1 || id == "" {
				t.Errorf("delivery %q accepted %d times", id, c)
			}
		}
		if len(got) != len(wants) {
			t.Fatalf("%d statuses accepted, want %d: %+v", len(got), len(wants), got)
		}
		for _, w := range wants {
			found := false
			for _, r := range got {
				if r.path == w.path && r.body[ctxField] == w.context {
					found = true
					if r.auth != auth || r.body["state"] != w.state || r.body["description"] != w.desc {
						t.Errorf("%s %s: got auth %q body %v, want %q %+v", w.path, w.context, r.auth, r.body, auth, w)
					}
				}
			}
			if !found {
				t.Errorf("no status %+v in %+v", w, got)
			}
		}
	}
	check(gh, "Bearer ghp_secret", "context", []want{
		{"/api/v3/repos/acme/models/statuses/" + shaA, "success", "cairn/edge", "RolloutSucceeded: 2 of 2 targets healthy"},
		{"/api/v3/repos/acme/models/statuses/" + shaB, "failure", "cairn/gpu", "RolloutFailed: health gate error_rate 0.2 > 0.01"},
	})
	check(gl, "glpat-secret", "name", []want{
		{"/api/v4/projects/ml%2Fedge-models/statuses/" + shaA, "success", "cairn/edge", "RolloutSucceeded: 2 of 2 targets healthy"},
		{"/api/v4/projects/ml%2Fedge-models/statuses/" + shaB, "failed", "cairn/gpu", "RolloutFailed: health gate error_rate 0.2 > 0.01"},
	})
	for _, r := range gh.requests() {
		if r.body["target_url"] != "https://cairn.acme/releases" {
			t.Errorf("github target_url %q", r.body["target_url"])
		}
	}
	all, err := n.opts.Outbox.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	for _, d := range all {
		states[d.State]++
		if d.State == StateSuperseded && !strings.HasPrefix(d.Alert, "commit-status/") {
			t.Errorf("superseded %+v", d)
		}
	}
	if states[StateDelivered] != 4 || states[StateSuperseded] != 2 || len(all) != 6 {
		t.Fatalf("deliveries by state %v, want 4 delivered and the 2 pending statuses superseded: %+v", states, all)
	}

	// The same step retried adds nothing; GitLab refusing a transition to
	// the state the status already has (running, running) counts as done.
	n.Send(nil, []fleet.Event{{ID: 5, Type: manifests.EventRolloutDone, Release: "edge", Commit: shaA, Message: "2 of 2 targets healthy"}})
	n.Send(nil, []fleet.Event{{ID: 6, Type: manifests.EventRolloutStarted, Release: "canary", Commit: shaB, Message: "wave 1 of 2"}})
	waitDelivered()
	n.Send(nil, []fleet.Event{{ID: 7, Type: manifests.EventWaveStarted, Release: "canary", Commit: shaB, Message: "wave 2 of 2"}})
	waitDelivered()
	if failed, _ := n.opts.Outbox.List(ctx, StateFailed); len(failed) != 0 {
		t.Fatalf("failed: %+v", failed)
	}
	if got := len(gh.requests()); got != 4 {
		t.Errorf("github accepted %d statuses, want 4 (2 + running twice as pending)", got)
	}
	if got := len(gl.requests()); got != 3 {
		t.Errorf("gitlab accepted %d statuses, want 3 (2 + running once, the second refused as a same-state transition)", got)
	}
	t.Logf("github refused %d, gitlab refused %d with 500 first; each delivery accepted once", gh.refused.Load(), gl.refused.Load())
}
