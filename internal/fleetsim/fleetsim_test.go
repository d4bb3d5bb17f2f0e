package fleetsim

import (
	"context"
	"fmt"
	"github.com/google/go-containerregistry/pkg/authn"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/reconciler"
	"github.com/cairn-dev/cairn/registry/models"
)

const fleetYAML = `apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: sim}
spec:
  selector:
    matchLabels: {fleet: sim}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: fast}
spec:
  waves: [{percent: 25}, {percent: 100}]
---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: "1"
  artifact: %s
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: r}
spec:
  model: m
  targets: [{profile: sim}]
  rolloutPolicy: fast
`

// TestSimulatedFleet runs 12 simulated devices against an in-process cairn
// serve: one is offline during the rollout, one crashes while activating
// and restarts; all end on the model.
func TestSimulatedFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs an in-process server")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	work := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	repo := filepath.Join(work, "repo")
	gitRun(t, "", "init", "-q", "-b", "main", repo)
	os.WriteFile(filepath.Join(repo, "README"), []byte("sim"), 0o644)
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "init")

	addrc := make(chan string, 1)
	cfg := reconciler.Config{Listen: "127.0.0.1:0", Data: filepath.Join(work, "data"), Repo: repo,
		Interval: reconciler.Duration(500 * time.Millisecond), PollInterval: reconciler.Duration(time.Second),
		OfflineAfter: reconciler.Duration(2 * time.Second), ReconcileInterval: reconciler.Duration(300 * time.Millisecond),
		EnrollToken: "sim", AdminToken: "admin", Enrollment: "auto"}
	served := make(chan error, 1)
	go func() {
		served <- reconciler.Serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), func(a string) { addrc <- a })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-served:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	server := "http://" + addr

	src := filepath.Join(work, "model")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "model.onnx"), []byte("weights"), 0o644)
	res, err := models.Push(ctx, addr+"/models/m:1", []string{filepath.Join(src, "model.onnx")}, models.PushOptions{Options: models.Options{PlainHTTP: true, Keychain: adminKeychain{}}})
	if err != nil {
		t.Fatal(err)
	}

	sim, err := New(12, Options{
		API:         func(int) agent.API { return fleet.NewClient(server) },
		Root:        filepath.Join(work, "devices"),
		EnrollToken: "sim",
		Labels:      func(i int) map[string]string { return map[string]string{"fleet": "sim", "n": fmt.Sprint(i)} },
		PollWait:    time.Second,
		Logf:        t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	offline, crashy := sim.Devices[3], sim.Devices[7]
	crashy.CrashAt("activating")
	if err := sim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer sim.Stop()
	waitUntil(t, "all enrolled", func() bool {
		for _, d := range sim.Devices {
			if d.Reports() == 0 {
				return false
			}
		}
		return true
	})
	offline.SetOffline(true)

	os.WriteFile(filepath.Join(repo, "fleet.yaml"), []byte(fmt.Sprintf(fleetYAML, res.Ref)), 0o644)
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "release m")

	waitUntil(t, "crashy device to crash", func() bool { return !crashy.Running() })
	if got := crashy.Active("r"); got != "" {
		t.Fatalf("crashed device serves %s", got)
	}
	if err := crashy.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "online devices on the model", func() bool {
		for _, d := range sim.Devices {
			if d != offline && d.Active("r") != res.Digest {
				return false
			}
		}
		return true
	})
	if offline.Active("r") != "" {
		t.Fatal("offline device installed while offline")
	}
	offline.SetOffline(false)
	waitUntil(t, "offline device catches up", func() bool { return offline.Active("r") == res.Digest })
	admin := fleet.NewAdminClient(server, "admin")
	waitUntil(t, "release Succeeded", func() bool {
		r, err := admin.Release(ctx, "r")
		return err == nil && r.Phase == "Succeeded"
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=sim", "GIT_AUTHOR_EMAIL=sim@example.com", "GIT_COMMITTER_NAME=sim", "GIT_COMMITTER_EMAIL=sim@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// adminKeychain pushes to the built-in registry with the admin token of the
// test's server, as the password of Basic auth.
type adminKeychain struct{}

func (adminKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return &authn.Basic{Username: "sim", Password: "admin"}, nil
}
