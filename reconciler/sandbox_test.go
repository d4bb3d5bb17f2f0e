package reconciler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// writePolicy writes policies/NAME.rego of the working clone work, a deny
// rule whose body is body.
func writePolicy(t *testing.T, work, name, body string) {
	t.Helper()
	dir := filepath.Join(work, "policies")
	os.MkdirAll(dir, 0o755)
	src := "package " + name + "\n\ndeny contains msg if {\n\t" + body + "\n\tmsg := sprintf(\"%v\", [x])\n}\n"
	if err := os.WriteFile(filepath.Join(dir, name+".rego"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func gitHead(t *testing.T, work string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", work, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// readyCondition is the source's Ready condition, nil when it has none.
func readyCondition(si *fleet.SourceInfo) *fleet.Condition {
	for i := range si.Conditions {
		if si.Conditions[i].Type == TypeReady {
			return &si.Conditions[i]
		}
	}
	return nil
}

// TestPolicySandboxInServe is the policy probe of issue 14 against a real
// cairn serve: a repository policy calling http.send (a DELETE aimed at a
// listener, as the probe sent one to the built-in registry),
// net.lookup_ip_addr or opa.runtime fails to compile, the commit is
// rejected with a reason naming the built-in, the admitted release keeps
// its digest, and the listener hears nothing. (cmd/cairn's
// TestPlanSandboxRefusesNetwork is the same probe through cairn plan.)
func TestPolicySandboxInServe(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int32
	lis := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer lis.Close()
	gitURL, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: gitURL, Interval: Duration(time.Hour), AdminToken: "admin-secret"})
	admin := fleet.NewAdminClient(base, "admin-secret")
	waitAdmitted(t, admin, "r")

	for i, call := range []string{
		`http.send({"method": "DELETE", "url": "` + lis.URL + `/v2/models/m/manifests/latest"})`,
		`net.lookup_ip_addr("` + strings.TrimPrefix(lis.URL, "http://") + `")`,
		`opa.runtime()`,
	} {
		name := call[:strings.IndexByte(call, '(')]
		os.RemoveAll(filepath.Join(work, "policies"))
		writePolicy(t, work, "evil", "x := "+call)
		commitPush(t, work, manifestsFor(2+i), "evil "+name)
		commit := gitHead(t, work)
		hook(t, base, "")
		var ready *fleet.Condition
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			si, err := admin.Source(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ready = readyCondition(si); si.Commit == commit && ready != nil && strings.Contains(ready.Message, commit[:7]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: commit %s not rejected within 15s: %+v", name, commit[:7], si)
			}
		}
		if ready.Status != "False" || ready.Reason != ReasonPolicyFailed || !strings.Contains(ready.Message, "built-in "+name+" is not allowed") {
			t.Errorf("%s: source Ready = %+v, want PolicyFailed naming the built-in", name, ready)
		}
		if rel, err := admin.Release(ctx, "r"); err != nil || rel.Digest != digestOf(1) {
			t.Errorf("%s: release after the rejected commit = %+v, %v; want digest 1 kept", name, rel, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("a repository policy reached the listener %d times", n)
	}
}

// TestSlowPolicyTimesOutOutsideLock: a repository policy iterating 25
// million times (numbers.range comprehensions) is stopped at the
// configured policyTimeout and denies its release with that reason, which
// keeps its admitted digest. While it evaluates, /healthz,
// /api/v1/targets and /api/v1/source answer within 1 s and a pass runs
// (an operator's pause is acted on): evaluation holds no reconciler lock.
func TestSlowPolicyTimesOutOutsideLock(t *testing.T) {
	ctx := context.Background()
	gitURL, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: gitURL, Interval: Duration(time.Hour), AdminToken: "admin-secret", EnrollToken: "enroll-secret",
		PolicyTimeout: Duration(4 * time.Second)})
	admin := fleet.NewAdminClient(base, "admin-secret")
	waitAdmitted(t, admin, "r")
	enroll(t, fleet.NewClient(base), "dev-a")

	writePolicy(t, work, "slow", "x := count([1 | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); i == j + 100000])\n\tx >= 0")
	commitPush(t, work, manifestsFor(2), "slow policy")
	commit := gitHead(t, work)
	hook(t, base, "")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		si, err := admin.Source(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if si.Commit == commit {
			break // fetched: its admission is evaluating
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow commit was not fetched within 10s")
		}
	}
	started := time.Now()
	events := func(typ string) []fleet.Event {
		evs, err := admin.Events(ctx, fleet.EventFilter{Release: "r", Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	for _, path := range []string{"/healthz", "/api/v1/targets", "/api/v1/source"} {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer admin-secret")
		c := &http.Client{Timeout: time.Second}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s while a policy evaluates: %v", path, err)
		}
		resp.Body.Close()
		if took := time.Since(t0); resp.StatusCode != http.StatusOK || took > time.Second {
			t.Errorf("GET %s while a policy evaluates: %d in %s", path, resp.StatusCode, took)
		}
	}
	if err := admin.RolloutAction(ctx, "r", "pause"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		paused := false
		for _, e := range events("") {
			// RolloutCommand is the API's record of the request; the
			// pass answers with the rollout's own event.
			paused = paused || e.Type != "RolloutCommand" && strings.Contains(strings.ToLower(e.Type+" "+e.Message), "pause")
		}
		if paused {
			t.Logf("a pass acted on the pause %s after the fetch, while the policy evaluated", time.Since(started))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pass acted on the pause within 2s while the policy evaluated (events %+v)", events(""))
		}
	}
	if d := events(manifests.EventPolicyDenied); len(d) != 0 || time.Since(started) > 4*time.Second {
		t.Fatalf("the pause was acted on after the evaluation ended (%s, denials %+v): cannot tell it ran outside the lock", time.Since(started), d)
	}

	// The evaluation is stopped at 4s and denies the release, which keeps v1.
	var rel *fleet.ReleaseInfo
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var err error
		if rel, err = admin.Release(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		if rel.Denied != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("release not denied within 20s: %+v", rel)
		}
	}
	took := time.Since(started)
	if !strings.Contains(rel.Denied, "policy-timeout: the policies were not evaluated within 4s") || rel.Digest != digestOf(1) {
		t.Fatalf("release = digest %s, denied %q; want digest 1 kept and the timeout named", rel.Digest, rel.Denied)
	}
	if took > 8*time.Second {
		t.Errorf("denied %s after the fetch: the 4s timeout did not stop the evaluation", took)
	}
	if d := events(manifests.EventPolicyDenied); len(d) != 1 || !strings.Contains(d[0].Message, "not evaluated within 4s") {
		t.Fatalf("PolicyDenied events = %+v", d)
	}
}
