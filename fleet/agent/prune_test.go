package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

// A release the desired state stops listing is uninstalled: its runtime
// link, slots and links go, the journal forgets it, reports stop listing
// it and the log says Removed with the digest that ran. A failure part-way
// (a crash after the files went, before the journal was saved) is finished
// on the next pass.
func TestPruneRemovedRelease(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	runtimePath := filepath.Join(t.TempDir(), "serving")
	v1.Runtime = fleet.Runtime{Path: runtimePath, HealthCheck: healthExec("ok")}
	other := v1
	other.Release, other.Runtime = "other", fleet.Runtime{}
	root := t.TempDir()
	api := newMemAPI()
	failOnce := true
	a := newTestAgent(t, root, api, func(c *Config) {
		c.Hooks.Step = func(rel, step string) error {
			if rel == "demo" && step == "removed-files" && failOnce {
				failOnce = false
				return errors.New("simulated crash")
			}
			return nil
		}
	})
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1, other}}); err != nil {
		t.Fatal(err)
	}
	wantActive(t, root, v1.Digest)

	// The first removal stops after the files: the journal still holds it.
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{other}}); err == nil {
		t.Fatal("want the simulated crash")
	}
	if _, err := os.Stat(filepath.Join(root, "models", "demo")); !os.IsNotExist(err) {
		t.Fatalf("release folder still there: %v", err)
	}
	j, err := loadJournal(filepath.Join(root, "journal.json"))
	if err != nil || j.Releases["demo"] == nil {
		t.Fatalf("journal lost demo before the removal finished: %v", err)
	}
	// Retried on the next poll.
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{other}}); err != nil {
		t.Fatal(err)
	}
	j, err = loadJournal(filepath.Join(root, "journal.json"))
	if err != nil || j.Releases["demo"] != nil || j.Releases["other"] == nil {
		t.Fatalf("journal %+v, %v", j.Releases, err)
	}
	if _, err := os.Lstat(runtimePath); !os.IsNotExist(err) {
		t.Fatalf("runtime link still there: %v", err)
	}
	if ActiveDigest(root, "other") != other.Digest {
		t.Fatal("the other release was touched")
	}
	for _, s := range a.Status() {
		if s.Release == "demo" {
			t.Fatalf("status still lists demo: %+v", s)
		}
	}
	last := api.reports[len(api.reports)-1]
	for _, s := range last.Releases {
		if s.Release == "demo" {
			t.Fatalf("report still lists demo")
		}
	}
	found := false
	for _, e := range last.Log {
		if e.Release == "demo" && e.Phase == fleet.PhaseRemoved && e.Digest == v1.Digest {
			found = true
		}
	}
	if !found {
		t.Fatalf("no Removed log entry in %+v", last.Log)
	}
	// Nothing left to do: idempotent.
	n := len(api.reports)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{other}}); err != nil {
		t.Fatal(err)
	}
	if len(api.reports) != n {
		t.Fatal("a pass with nothing to remove reported")
	}
	// A stray release folder with no journal entry goes too.
	stray := filepath.Join(root, "models", "stray", "slots")
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{other}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "models", "stray")); !os.IsNotExist(err) {
		t.Fatal("stray release folder kept")
	}
}

// A release the desired state keeps (fleet.DesiredState.Keep: prune: false
// on the server) stays installed, linked and reported although Models no
// longer lists it; once no longer kept it is uninstalled.
func TestPruneKeep(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	runtimePath := filepath.Join(t.TempDir(), "serving")
	stopped := filepath.Join(t.TempDir(), "stopped")
	v1.Runtime = fleet.Runtime{Path: runtimePath, HealthCheck: healthExec("ok"), Stop: []string{"touch", stopped}}
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // kept on every poll, not only the first
		if err := a.Apply(bg, &fleet.DesiredState{Keep: []string{"demo", "never-installed"}}); err != nil {
			t.Fatal(err)
		}
	}
	wantActive(t, root, v1.Digest)
	if readLink(t, runtimePath) == "" {
		t.Fatal("runtime link of a kept release removed")
	}
	if _, err := os.Stat(stopped); !os.IsNotExist(err) {
		t.Fatal("a kept release's runtime was stopped")
	}
	listed := false
	for _, s := range a.Status() {
		listed = listed || s.Release == "demo" && s.Phase == fleet.PhaseHealthy && s.Digest == v1.Digest
	}
	if !listed {
		t.Fatalf("kept release not reported Healthy on v1: %+v", a.Status())
	}
	if _, err := os.Stat(filepath.Join(root, "models", "never-installed")); !os.IsNotExist(err) {
		t.Fatal("a kept name the agent never held was created")
	}
	// No longer kept: uninstalled, after its stop command.
	if err := a.Apply(bg, &fleet.DesiredState{}); err != nil {
		t.Fatal(err)
	}
	if ActiveDigest(root, "demo") != "" {
		t.Fatal("release still installed once no longer kept")
	}
	if _, err := os.Stat(stopped); err != nil {
		t.Fatalf("stop command did not run: %v", err)
	}
}

// The runtime's stop command runs before the release's files go, with
// CAIRN_MODEL_DIR the active slot, and once even when the removal is
// resumed after a crash. A stop that fails is reported (a Removing log
// entry) and holds the removal for maxStopAttempts polls, after which the
// release is uninstalled anyway and the Removed entry says why.
func TestPruneStop(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	// Appends the model file it still sees, so the test knows the slot was
	// there when stop ran.
	okStop := []string{"sh", "-c", `cat "$CAIRN_MODEL_DIR/model.onnx" >>` + calls + ` && echo >>` + calls}
	failStop := []string{"sh", "-c", `echo stop failed >&2; exit 3`}

	t.Run("runs before removal, once across a crash", func(t *testing.T) {
		root := t.TempDir()
		api := newMemAPI()
		crash := true
		a := newTestAgent(t, root, api, func(c *Config) {
			c.Hooks.Step = func(rel, step string) error {
				if step == "removed-files" && crash {
					crash = false
					return errors.New("simulated crash")
				}
				return nil
			}
		})
		dm := v1
		dm.Runtime = fleet.Runtime{HealthCheck: healthExec("ok"), Stop: okStop}
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		if err := a.Apply(bg, &fleet.DesiredState{}); err == nil {
			t.Fatal("want the simulated crash")
		}
		if err := a.Apply(bg, &fleet.DesiredState{}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(calls)
		if err != nil || string(b) != "weights v1\n" {
			t.Fatalf("stop calls %q, %v: want one, seeing the active slot", b, err)
		}
		if ActiveDigest(root, "demo") != "" {
			t.Fatal("not uninstalled")
		}
	})

	t.Run("failing stop holds the removal, then gives way", func(t *testing.T) {
		root := t.TempDir()
		api := newMemAPI()
		a := newTestAgent(t, root, api, nil)
		dm := v1
		dm.Runtime = fleet.Runtime{HealthCheck: healthExec("ok"), Stop: failStop}
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < maxStopAttempts; i++ {
			err := a.Apply(bg, &fleet.DesiredState{})
			if err == nil || !strings.Contains(err.Error(), "stop failed") {
				t.Fatalf("attempt %d: err %v, want the stop failure", i, err)
			}
			wantActive(t, root, v1.Digest)
			e := lastLog(api, "demo")
			if e.Phase != fleet.PhaseRemoving || !strings.Contains(e.Message, fmt.Sprintf("attempt %d of %d", i, maxStopAttempts)) {
				t.Fatalf("attempt %d: last log %+v, want Removing with the attempt", i, e)
			}
		}
		// The journal keeps the count: a restarted agent does not start over.
		a = newTestAgent(t, root, api, nil)
		if err := a.Apply(bg, &fleet.DesiredState{}); err != nil {
			t.Fatalf("last attempt: %v, want the removal done", err)
		}
		if ActiveDigest(root, "demo") != "" {
			t.Fatal("still installed after the last attempt")
		}
		e := lastLog(api, "demo")
		if e.Phase != fleet.PhaseRemoved || !strings.Contains(e.Message, "stop command failed 3 times") || !strings.Contains(e.Message, "stop failed") {
			t.Fatalf("last log %+v, want Removed saying the stop failed", e)
		}
	})

	t.Run("desired again after a failed stop", func(t *testing.T) {
		root := t.TempDir()
		api := newMemAPI()
		a := newTestAgent(t, root, api, nil)
		dm := v1
		dm.Runtime = fleet.Runtime{HealthCheck: healthExec("ok"), Stop: failStop}
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		if err := a.Apply(bg, &fleet.DesiredState{}); err == nil {
			t.Fatal("want the stop failure")
		}
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		j, err := loadJournal(filepath.Join(root, "journal.json"))
		if err != nil || j.Releases["demo"].StopFailures != 0 {
			t.Fatalf("journal %+v, %v: want the failures forgotten once desired again", j.Releases["demo"], err)
		}
		wantActive(t, root, v1.Digest)
	})
}

// lastLog is the newest log entry of rel the agent reported.
func lastLog(api *memAPI, rel string) fleet.LogEntry {
	api.mu.Lock()
	defer api.mu.Unlock()
	var last fleet.LogEntry
	for _, r := range api.reports {
		for _, e := range r.Log {
			if e.Release == rel {
				last = e
			}
		}
	}
	return last
}
