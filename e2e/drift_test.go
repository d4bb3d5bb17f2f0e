package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/examples/bearing/synth"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
)

const driftManifests = `apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata: {name: bearing-vibration}
spec: {digest: %s, format: csv}
---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: bearing}
spec:
  version: "%s"
  artifact: %s
  trainedOn: [bearing-vibration]
---
` + edgeProfile + `---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: drift-gated}
spec:
  waves: [{percent: 100, bake: 8s}]
  gates: [{metric: drift_psi, max: 0.25}]
  onFailure: rollback
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: bearing}
spec:
  model: bearing
  targets: [{profile: edge}]
  rolloutPolicy: drift-gated
  runtime:
    healthCheck: {http: "http://127.0.0.1:%[4]d/healthz", period: 500ms, retries: 20}
    metrics: "http://127.0.0.1:%[4]d/metrics"
  monitor:
    drift: {window: 20s, minSamples: 500, metric: drift_psi, max: 0.25, for: 2s}
`

// examplesBins builds the demo runtime and the bearing tool once.
var (
	exOnce sync.Once
	exDir  string
	exErr  error
)

func examplesBins(t *testing.T) (runtime, bearing string) {
	t.Helper()
	exOnce.Do(func() {
		exDir, exErr = os.MkdirTemp("", "cairn-e2e-examples")
		if exErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", exDir+"/", "./examples/runtime", "./examples/bearing")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			exErr = fmt.Errorf("go build examples: %v\n%s", err, out)
		}
	})
	if exErr != nil {
		t.Fatal(exErr)
	}
	return filepath.Join(exDir, "runtime"), filepath.Join(exDir, "bearing")
}

// TestDriftEndToEnd: the demo runtime serves the bearing model on a real
// agent's active slot and counts its inputs into the bins of the training
// profile the model ships; the agent scrapes them (Prometheus text) and the
// server compares them with the profile `cairn data push --profile` stored.
// v1 passes its drift gate on training-like inputs; shifted inputs raise
// DriftDetected naming the feature (and lineage records the drift); v2,
// whose inputs drift during its first wave, fails the gate and is rolled
// back.
func TestDriftEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and the examples and runs a server, an agent and a runtime")
	}
	runtimeBin, bearingBin := examplesBins(t)
	s := newServer(t, serveOptions{})
	work := s.work
	view := s.view()

	// The bearing data, its profile in the server's default dataset store,
	// and two model versions trained on it (each ships the profile).
	run(t, work, bearingBin, "gen", "--out", filepath.Join(work, "data-v1"), "--rows", "2000", "--seed", "1")
	train := filepath.Join(work, "data-v1", "train")
	out := strings.TrimSpace(s.cairn("data", "push", train, "--store", "file://"+filepath.Join(s.data, "datasets"), "--profile", "--no-cache"))
	dataset := out[strings.LastIndexByte(out, '\n')+1:]
	push := func(version string) string {
		dir := filepath.Join(work, "model-"+version)
		run(t, work, bearingBin, "train", "--data", train, "--out", dir, "--version", version, "--epochs", "60")
		if _, err := os.Stat(filepath.Join(dir, "profile.json")); err != nil {
			t.Fatalf("bearing train shipped no profile: %v", err)
		}
		return s.push("models/bearing:"+version, []string{dir}, "--name", "bearing", "--version", version, "--format", "raw",
			"--trained-on", "bearing-vibration="+dataset)
	}
	v1, v2 := push("1.0.0"), push("2.0.0")
	d1, d2 := digestOf(v1), digestOf(v2)
	t.Logf("dataset %s; v1 %s; v2 %s", short(dataset), short(d1), short(d2))

	// One agent, and the runtime serving its active slot (plain HTTP on
	// loopback: the runtime is the device's own, not cairn serve).
	rport := freePort(t)
	s.agent("dev-1", "--labels", "env=prod")
	root := s.agentRoot("dev-1")
	s.start("runtime", runtimeBin, "--model-dir", filepath.Join(root, "models", "bearing", "current"), "--listen", fmt.Sprintf("127.0.0.1:%d", rport))

	// Live traffic: holdout rows (like the training data), or with rms
	// tripled once shifted.
	var shifted atomic.Bool
	rows, err := synth.ReadFile(filepath.Join(work, "data-v1", "holdout", "holdout.csv"))
	if err != nil {
		m, _ := filepath.Glob(filepath.Join(work, "data-v1", "holdout", "*.csv"))
		if len(m) == 0 {
			t.Fatal(err)
		}
		if rows, err = synth.ReadFile(m[0]); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			var batch [][]float64
			for j := range 100 {
				x := append([]float64(nil), rows[(i*100+j)%len(rows)].X...)
				if shifted.Load() {
					x[0] *= 3
				}
				batch = append(batch, x)
			}
			b, _ := json.Marshal(map[string]any{"rows": batch})
			if resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/predict", rport), "application/json", bytes.NewReader(b)); err == nil {
				resp.Body.Close()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-fed })

	release := func() *fleet.ReleaseInfo { return view.release(t, "bearing") }
	driftOf := func(r *fleet.ReleaseInfo) *fleet.TargetDrift {
		if r == nil {
			return nil
		}
		for i := range r.Drift {
			if r.Drift[i].Target != "" {
				return &r.Drift[i]
			}
		}
		return nil
	}

	// 1. v1 on training-like inputs: conclusive, low drift, gate passes.
	t.Log("STEP 1: release v1; the runtime sees inputs like the training data")
	s.commit("v1", fmt.Sprintf(driftManifests, dataset, "1.0.0", v1, rport))
	eventually(t, 90*time.Second, "v1 Succeeded with conclusive low drift", func() (bool, string) {
		r := release()
		d := driftOf(r)
		if r == nil || d == nil {
			return false, "no drift yet"
		}
		return r.Phase == "Succeeded" && r.Digest == d1 && d.Conclusive && d.PSI < 0.25,
			fmt.Sprintf("%s %s: drift %+v", r.Phase, r.Message, *d)
	})
	d := driftOf(release())
	t.Logf("v1 Succeeded: drift_psi=%.3f drift_js=%.3f drift_ks=%.3f over %d samples", d.PSI, d.JS, d.KS, d.Samples)
	if d.Model != d1 || d.Dataset != dataset {
		t.Fatalf("drift compares %s with %s, want v1 with the training dataset", short(d.Model), short(d.Dataset))
	}

	// 2. Shifted inputs: DriftDetected names rms.
	t.Log("STEP 2: the runtime's inputs shift (rms ×3)")
	shifted.Store(true)
	var alarm fleet.Event
	eventually(t, 60*time.Second, "DriftDetected", func() (bool, string) {
		evs, err := view.admin.Events(t.Context(), fleet.EventFilter{Type: "DriftDetected"})
		if err != nil || len(evs) == 0 {
			r := release()
			if dd := driftOf(r); dd != nil {
				return false, fmt.Sprintf("drift_psi=%.3f", dd.PSI)
			}
			return false, fmt.Sprint(err)
		}
		alarm = evs[0]
		return true, ""
	})
	t.Logf("DriftDetected: %s", alarm.Message)
	if !strings.Contains(alarm.Message, "worst features rms=") || alarm.Target == "" {
		t.Fatalf("DriftDetected does not name rms first: %+v", alarm)
	}
	getDrift := s.api("get", "drift")
	t.Logf("cairn get drift:\n%s", getDrift)
	if !strings.Contains(getDrift, "DriftDetected") || !strings.Contains(getDrift, "rms=") {
		t.Fatalf("cairn get drift shows no alarm:\n%s", getDrift)
	}
	desc := s.api("describe", "target", alarm.Target)
	if !strings.Contains(desc, "Drift:") || !strings.Contains(desc, "rms") {
		t.Fatalf("cairn describe target shows no drift:\n%s", desc)
	}
	l := s.lineage(nil)
	var sg lineage.Subgraph
	if err := json.Unmarshal([]byte(l.run(t, "upstream", "model:"+d1, "--depth", "1", "-o", "json")), &sg); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, k := range sg.Links {
		found = found || (k.Type == lineage.EdgeDriftedFrom && k.To == "dataset:"+dataset)
	}
	if !found {
		t.Fatalf("lineage upstream of v1 has no driftedFrom edge to the dataset: %+v", sg.Links)
	}

	// 3. v2 while the inputs are shifted: its first wave's drift gate
	// fails at the end of the bake and the release rolls back to v1.
	t.Log("STEP 3: release v2; its inputs drift during the first wave")
	s.commit("v2", fmt.Sprintf(driftManifests, dataset, "2.0.0", v2, rport))
	eventually(t, 90*time.Second, "v2 RolledBack on its drift gate", func() (bool, string) {
		r := release()
		if r == nil {
			return false, ""
		}
		return r.Phase == "RolledBack" && r.Digest == d2, fmt.Sprintf("%s %s %s", r.Phase, r.Reason, r.Message)
	})
	r := release()
	t.Logf("v2: %s: %s", r.Phase, r.Message)
	if !strings.Contains(r.Message, "drift_psi") || r.LastGood != d1 {
		t.Fatalf("v2 rolled back for %q (last good %s), want its drift gate and v1", r.Message, short(r.LastGood))
	}
}
