package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-dev/cairn/examples/bearing/model"
)

// TestGenTrainEvalSelftest runs the subcommands the demo runs, in order.
func TestGenTrainEvalSelftest(t *testing.T) {
	dir := t.TempDir()
	data, good, bad := filepath.Join(dir, "data"), filepath.Join(dir, "v1"), filepath.Join(dir, "v2-broken")
	steps := []struct {
		name string
		run  func([]string) error
		args []string
	}{
		{"gen", gen, []string{"--out", data, "--rows", "600", "--holdout", "300"}},
		{"train", train, []string{"--data", filepath.Join(data, "train"), "--holdout", filepath.Join(data, "holdout"), "--out", good, "--epochs", "150"}},
		{"train --corrupt", train, []string{"--data", filepath.Join(data, "train"), "--holdout", filepath.Join(data, "holdout"), "--out", bad, "--epochs", "150", "--corrupt"}},
		{"eval", eval, []string{"--model", good, "--data", filepath.Join(data, "holdout"), "--metrics", filepath.Join(dir, "m.json")}},
		{"selftest", selftest, []string{"--model", good}},
	}
	for _, s := range steps {
		if err := s.run(s.args); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if err := selftest([]string{"--model", bad}); err == nil {
		t.Fatal("selftest passed a corrupted model")
	}
	// train's metrics.json and eval's agree, and pass the AUC bar.
	var a, b model.Metrics
	for f, m := range map[string]*model.Metrics{filepath.Join(good, model.MetricsFile): &a, filepath.Join(dir, "m.json"): &b} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, m); err != nil {
			t.Fatal(err)
		}
	}
	if a != b {
		t.Errorf("train wrote %+v, eval %+v", a, b)
	}
	if a.AUC < 0.9 {
		t.Errorf("holdout AUC %.4f < 0.9", a.AUC)
	}
	// CAIRN_MODEL_DIR is selftest's default, as the agent's exec check sets it.
	t.Setenv("CAIRN_MODEL_DIR", good)
	if err := selftest(nil); err != nil {
		t.Fatalf("selftest with CAIRN_MODEL_DIR: %v", err)
	}
}
