package agent

import (
	"errors"
	"os"
	"path/filepath"
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
