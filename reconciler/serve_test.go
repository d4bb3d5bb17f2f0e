package reconciler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/registry/models"
)

const gitBackend = "/usr/lib/git-core/git-http-backend"

// gitServer serves a bare repository through git http-backend under
// net/http/cgi and returns its URL and a working clone.
func gitServer(t *testing.T) (url, work string) {
	t.Helper()
	if _, err := os.Stat(gitBackend); err != nil {
		t.Skip("git http-backend not installed")
	}
	root := t.TempDir()
	run(t, root, "git", "init", "-q", "--bare", "-b", "main", "repo.git")
	run(t, filepath.Join(root, "repo.git"), "git", "config", "http.receivepack", "true")
	h := &cgi.Handler{Path: gitBackend, Root: "/git", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	url = srv.URL + "/git/repo.git"
	work = filepath.Join(t.TempDir(), "work")
	run(t, "", "git", "clone", "-q", url, work)
	run(t, work, "git", "checkout", "-q", "-b", "main")
	return url, work
}

func run(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func digestOf(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// manifestsFor is a minimal repo: one model at digest n, one profile, one release.
func manifestsFor(n int) string {
	return `apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: 1.0.` + fmt.Sprint(n) + `
  artifact: 127.0.0.1:5000/models/m@` + digestOf(n) + `
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: edge}
spec:
  selector:
    matchLabels: {env: prod}
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: r}
spec:
  model: m
  targets: [{profile: edge}]
  runtime: {path: /var/lib/m}
`
}

func commitPush(t *testing.T, work, content, msg string) {
	t.Helper()
	os.MkdirAll(filepath.Join(work, "manifests"), 0o755)
	if err := os.WriteFile(filepath.Join(work, "manifests", "all.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, work, "git", "add", "-A")
	run(t, work, "git", "commit", "-q", "-m", msg)
	run(t, work, "git", "push", "-q", "origin", "main")
}

// startServe runs Serve in the background and returns its URL.
func startServe(t *testing.T, cfg Config) string {
	t.Helper()
	url, stop := startServeStop(t, cfg)
	t.Cleanup(stop)
	return url
}

// startServeStop runs Serve and returns its URL and a function that stops it
// (gracefully, as SIGTERM does) and waits for it. These tests name model
// artifacts nobody pushed: admission does not check them
// (SkipArtifactCheck) unless the test runs serveChecked.
func startServeStop(t *testing.T, cfg Config) (string, func()) {
	t.Helper()
	cfg.SkipArtifactCheck = true
	return serveChecked(t, cfg)
}

// serveChecked is startServeStop with cfg's SkipArtifactCheck as it is.
func serveChecked(t *testing.T, cfg Config) (string, func()) {
	t.Helper()
	if cfg.Data == "" {
		cfg.Data = t.TempDir()
	}
	cfg.Listen = "127.0.0.1:0"
	if cfg.Enrollment == "" {
		cfg.Enrollment = "auto" // these tests enroll and use targets at once; security_test covers "manual"
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), func(a string) { addr <- a })
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	select {
	case a := <-addr:
		if cfg.TLSCert != "" {
			return "https://" + a, stop
		}
		return "http://" + a, stop
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", stop
}

func enroll(t *testing.T, c *fleet.Client, name string) *fleet.EnrollResponse {
	t.Helper()
	er, err := c.Enroll(context.Background(), fleet.EnrollRequest{Token: "enroll-secret", Name: name, Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "amd64", OS: "linux"}})
	if err != nil {
		t.Fatal(err)
	}
	return er
}

// waitDigest long-polls until the target's desired state names digest.
func waitDigest(t *testing.T, c *fleet.Client, er *fleet.EnrollResponse, digest string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	etag := ""
	for time.Since(start) < within {
		ds, changed, err := c.Desired(context.Background(), er.ID, er.Credential, etag, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if changed {
			etag = ds.ETag
			if len(ds.Models) == 1 && ds.Models[0].Digest == digest {
				return time.Since(start)
			}
		}
	}
	t.Fatalf("desired state of %s did not reach %s within %s", er.ID, digest, within)
	return 0
}

func hook(t *testing.T, base, secret string) {
	t.Helper()
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/git", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", source.Sign(body, secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
}

func TestServeWebhookBrokenCommitAndForbidden(t *testing.T) {
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: url, Interval: Duration(time.Hour), WebhookSecret: "hook-secret",
		EnrollToken: "enroll-secret", AdminToken: "admin-secret", ReconcileInterval: Duration(200 * time.Millisecond)})
	c := fleet.NewClient(base)
	a, b := enroll(t, c, "dev-a"), enroll(t, c, "dev-b")
	waitDigest(t, c, a, digestOf(1), 10*time.Second)

	// A pushed commit reaches the desired state after the webhook.
	commitPush(t, work, manifestsFor(2), "v2")
	start := time.Now()
	hook(t, base, "hook-secret")
	waitDigest(t, c, a, digestOf(2), 10*time.Second)
	t.Logf("webhook to desired state: %s", time.Since(start))

	// A bad signature is refused.
	req, _ := http.NewRequest(http.MethodPost, base+"/hooks/git", strings.NewReader("{}"))
	req.Header.Set("X-Hub-Signature-256", source.Sign([]byte("{}"), "wrong"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad signature: %v %v", resp.StatusCode, err)
	}

	// A broken commit keeps the last good state, with a condition saying why.
	commitPush(t, work, "apiVersion: cairn.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec: {bogus: 1}\n", "broken")
	hook(t, base, "hook-secret")
	admin := fleet.NewAdminClient(base, "admin-secret")
	var si *fleet.SourceInfo
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if si, err = admin.Source(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Fetched, then rejected: a commit being evaluated (its policies
		// run without the reconciler's lock) is fetched and not yet either.
		if r := readyCondition(si); si.Commit != si.Admitted && r != nil && r.Status == "False" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ready *fleet.Condition
	for i := range si.Conditions {
		if si.Conditions[i].Type == TypeReady {
			ready = &si.Conditions[i]
		}
	}
	if ready == nil || ready.Status != "False" || ready.Reason != ReasonValidationFailed || !strings.Contains(ready.Message, "bogus") {
		t.Fatalf("source conditions after a broken commit = %+v", si.Conditions)
	}
	ds, _, err := c.Desired(context.Background(), a.ID, a.Credential, "", 0)
	if err != nil || len(ds.Models) != 1 || ds.Models[0].Digest != digestOf(2) {
		t.Fatalf("desired after broken commit = %+v, %v; want the last good digest", ds, err)
	}
	rel, err := admin.Release(context.Background(), "r")
	if err != nil || rel.Digest != digestOf(2) {
		t.Fatalf("release after broken commit = %+v, %v", rel, err)
	}

	// A credential reads only its own target.
	if _, _, err := c.Desired(context.Background(), a.ID, b.Credential, "", 0); !errors.Is(err, fleet.ErrForbidden) {
		t.Fatalf("b's credential reading a's desired state: %v, want 403", err)
	}
	if err := c.ReportStatus(context.Background(), a.ID, b.Credential, fleet.StatusReport{}); !errors.Is(err, fleet.ErrForbidden) {
		t.Fatalf("b's credential reporting for a: %v, want 403", err)
	}
	if _, _, err := c.Desired(context.Background(), a.ID, "nonsense", "", 0); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("unknown credential: %v, want 401", err)
	}
	// Status reports show up in the status API.
	if err := c.ReportStatus(context.Background(), a.ID, a.Credential, fleet.StatusReport{Time: time.Now(), Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: digestOf(2)}},
		Metrics: map[string]float64{"cpu_percent": 12}, Log: []fleet.LogEntry{{Time: time.Now(), Release: "r", Phase: fleet.PhaseHealthy, Message: "activated"}}}); err != nil {
		t.Fatal(err)
	}
	// The deployment it reports is in lineage.
	active, err := lineage.NewClient(base, "admin-secret").At(context.Background(), a.ID, time.Now().Add(time.Second))
	if err != nil || len(active) != 1 {
		t.Fatalf("lineage at %s = %+v, %v", a.ID, active, err)
	}
	ti, err := admin.Target(context.Background(), a.ID)
	if err != nil || ti.Phase != fleet.PhaseHealthy || !ti.Online || len(ti.Log) != 1 || len(ti.Desired) != 1 {
		t.Fatalf("target info = %+v, %v", ti, err)
	}
	// The read-only token cannot act; the admin token can.
	if err := fleet.NewAdminClient(base, "").RolloutAction(context.Background(), "r", "pause"); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Fatalf("rollout action without token: %v", err)
	}
	if err := admin.RolloutAction(context.Background(), "r", "pause"); err != nil {
		t.Fatal(err)
	}
}

func TestServePollingPicksUpCommit(t *testing.T) {
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: url, Interval: Duration(500 * time.Millisecond), EnrollToken: "enroll-secret",
		ReconcileInterval: Duration(200 * time.Millisecond)})
	c := fleet.NewClient(base)
	a := enroll(t, c, "dev-a")
	waitDigest(t, c, a, digestOf(1), 10*time.Second)
	commitPush(t, work, manifestsFor(3), "v3")
	d := waitDigest(t, c, a, digestOf(3), 15*time.Second)
	t.Logf("push to desired state by polling: %s", d)
}

func TestServeBuiltinRegistryPushPull(t *testing.T) {
	data := t.TempDir()
	base, stop := startServeStop(t, Config{Data: data})
	host := strings.TrimPrefix(base, "http://")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "model.onnx"), bytes.Repeat([]byte("weights"), 1000), 0o644)
	ctx := context.Background()
	// Loopback is not trusted: a push needs the admin token.
	if _, err := models.Push(ctx, host+"/models/x:v1", []string{filepath.Join(src, "model.onnx")},
		models.PushOptions{Options: models.Options{PlainHTTP: true, Keychain: staticKeychain{authn.Anonymous}}}); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Fatalf("push without the admin token: %v", err)
	}
	adminTok, _ := os.ReadFile(filepath.Join(data, "admin-token"))
	withTok := staticKeychain{&authn.Basic{Username: "anyone", Password: strings.TrimSpace(string(adminTok))}}
	res, err := models.Push(ctx, host+"/models/x:v1", []string{filepath.Join(src, "model.onnx")}, models.PushOptions{Options: models.Options{PlainHTTP: true, Keychain: withTok}})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := models.Pull(ctx, res.Ref, out, models.PullOptions{Options: models.Options{PlainHTTP: true}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(out, "model.onnx"))
	if err != nil || len(got) != 7000 {
		t.Fatalf("pulled model.onnx: %d bytes, %v", len(got), err)
	}
	for _, f := range []string{"enroll-token", "admin-token", "cairn.db"} {
		if _, err := os.Stat(filepath.Join(data, f)); err != nil {
			t.Errorf("embedded defaults: %v", err)
		}
	}
	tok, _ := os.ReadFile(filepath.Join(data, "admin-token"))

	// The registry's manifests, tokens and state survive a restart.
	stop()
	base2 := startServe(t, Config{Data: data})
	host2 := strings.TrimPrefix(base2, "http://")
	out2 := t.TempDir()
	ref2 := host2 + "/models/x:v1"
	if _, err := models.Pull(ctx, ref2, out2, models.PullOptions{Options: models.Options{PlainHTTP: true}}); err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	if _, err := fleet.NewAdminClient(base2, strings.TrimSpace(string(tok))).Releases(ctx); err != nil {
		t.Fatalf("admin token after restart: %v", err)
	}
}

// staticKeychain gives every registry one authenticator.
type staticKeychain struct{ a authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) { return k.a, nil }
