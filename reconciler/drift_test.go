package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

var trainDigest = fmt.Sprintf("sha256:%064x", 0xd1)

// driftRepo is a model trained on a profiled dataset, one release gated on
// drift_psi and monitored for it.
func driftRepo(model int) source.Revision { return driftRepoWith(model, "") }

// driftRepoWith adds extra to the monitor's drift settings.
func driftRepoWith(model int, extra string) source.Revision {
	m := `apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata: {name: train}
spec: {digest: ` + trainDigest + `}
---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: 1.0.0
  artifact: 127.0.0.1:5000/models/m@` + digestOf(model) + `
  trainedOn: [train]
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: all}
spec:
  selector:
    matchLabels: {env: prod}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: gated}
spec:
  waves: [{percent: 100, bake: 300ms}]
  gates: [{metric: drift_psi, max: 0.25}]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: r}
spec:
  model: m
  targets: [{profile: all}]
  rolloutPolicy: gated
  runtime: {path: /var/lib/m, metrics: "http://127.0.0.1:8080/metrics"}
  monitor:
    drift: {window: 1h, minSamples: 50, metric: drift_psi, max: 0.25` + extra + `}
`
	return source.Revision{Commit: fmt.Sprintf("%040x", model), FS: fstest.MapFS{"manifests/all.yaml": {Data: []byte(m)}}}
}

// trainProfile has one feature, rms, uniform over [0, 4) in four bins.
func trainProfile(_ context.Context, store, digest string) (*datasets.Profile, error) {
	if store != "default" || digest != trainDigest {
		return nil, fmt.Errorf("no profile for %s in %s", digest, store)
	}
	return &datasets.Profile{Digest: digest, Files: []datasets.FileProfile{{Path: "train.csv", Columns: []datasets.ColumnProfile{
		{Name: "rms", Count: 400, Histogram: datasets.Histogram{Min: 0, Max: 4, Counts: []int64{100, 100, 100, 100}}}}}}}, nil
}

// window is n observations of rms spread as the proportions p over the
// profile's four bins, counted into the bounds a runtime exports.
func window(end time.Time, n int64, p [4]float64) *fleet.InputWindow {
	ref := drift.EqualWidth(0, 4, []int64{1, 1, 1, 1})
	b := drift.Bounds(ref) // [0⁻, 0, 1, 2, 3, 4]
	counts := make([]int64, len(b)+1)
	for i, f := range p {
		counts[i+2] = int64(f * float64(n))
	}
	return &fleet.InputWindow{Start: end.Add(-time.Second), End: end, Features: map[string]fleet.FeatureHistogram{"rms": {Bounds: b, Counts: counts}}}
}

// driftEnv is a reconciler over SQLite and lineage with one target, dev-1.
type driftEnv struct {
	t     *testing.T
	st    store.Store
	r     *Reconciler
	graph *lineage.Graph
}

func newDriftEnv(t *testing.T) *driftEnv {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnrollTarget(ctx, store.Target{ID: "dev-1", Name: "dev-1", Labels: map[string]string{"env": "prod"}, CredHash: "h"}); err != nil {
		t.Fatal(err)
	}
	graph, err := lineage.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	r := New(Options{Store: st, Profiles: trainProfile, Lineage: graph})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	return &driftEnv{t: t, st: st, r: r, graph: graph}
}

// report posts dev-1 healthy on model digest n with input window w, runs
// a pass and returns the release's status.
func (e *driftEnv) report(digest int, w *fleet.InputWindow) fleet.ReleaseInfo {
	t, st, r, ctx := e.t, e.st, e.r, context.Background()
	{
		t.Helper()
		now := time.Now().UTC()
		rep := fleet.StatusReport{Time: now, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: digestOf(digest), Desired: digestOf(digest), Inputs: w}}}
		if err := st.PutStatus(ctx, "dev-1", rep, now); err != nil {
			t.Fatal(err)
		}
		if err := r.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		rel, err := st.Release(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		var info fleet.ReleaseInfo
		if err := json.Unmarshal(rel.Status, &info); err != nil {
			t.Fatal(err)
		}
		return info
	}
}

func TestDriftGateAndMonitor(t *testing.T) {
	ctx := context.Background()
	e := newDriftEnv(t)
	r, st, graph, report := e.r, e.st, e.graph, e.report
	if err := r.Admit(ctx, driftRepo(1)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	// Fewer samples than minSamples: no data, the gate does not hold v1.
	info := report(1, window(now, 20, [4]float64{.25, .25, .25, .25}))
	if len(info.Drift) != 1 || info.Drift[0].Conclusive || info.Drift[0].Samples != 20 {
		t.Fatalf("drift with 20 samples = %+v, want one inconclusive target", info.Drift)
	}
	// Training-like inputs: PSI near 0, v1 passes its gate after the bake.
	report(1, window(now.Add(time.Second), 400, [4]float64{.25, .25, .25, .25}))
	time.Sleep(350 * time.Millisecond)
	info = report(1, nil)
	d := info.Drift[0]
	if !d.Conclusive || d.PSI > 0.01 || d.Samples != 420 || d.Dataset != trainDigest || d.Model != digestOf(1) || info.Phase != rollout.PhaseSucceeded {
		t.Fatalf("training-like drift = %+v, phase %s", d, info.Phase)
	}
	// Shifted inputs: the window's sum moves past 0.25 and the monitor
	// raises DriftDetected naming the feature.
	info = report(1, window(now.Add(2*time.Second), 2000, [4]float64{0, 0, .2, .8}))
	if d := info.Drift[0]; d.PSI <= 0.25 || d.Alarm == nil || d.Features[0].Name != "rms" {
		t.Fatalf("shifted drift = %+v", d)
	}
	evs, err := st.Events(ctx, fleet.EventFilter{Type: "DriftDetected"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Target != "dev-1" || !strings.Contains(evs[0].Message, "worst features rms=") {
		t.Fatalf("DriftDetected events = %+v", evs)
	}
	// Lineage records it against (model digest, dataset digest).
	graph.WaitIndex(ctx)
	sub, err := graph.Upstream(ctx, "model:"+digestOf(1), 1)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range sub.Links {
		found = found || (l.Type == lineage.EdgeDriftedFrom && l.To == "dataset:"+trainDigest)
	}
	if !found {
		t.Fatalf("no driftedFrom edge upstream of the model: %+v", sub.Links)
	}
	// The same state does not raise it twice.
	report(1, nil)
	if evs, _ := st.Events(ctx, fleet.EventFilter{Type: "DriftDetected"}); len(evs) != 1 {
		t.Fatalf("%d DriftDetected events, want 1", len(evs))
	}

	// v2 drifts from its first window: its gate holds the wave, fails at
	// the end of the bake, and the release rolls back to v1.
	if err := r.Admit(ctx, driftRepo(2)); err != nil {
		t.Fatal(err)
	}
	report(2, nil) // the first window of a new model starts over
	info = report(2, window(now.Add(3*time.Second), 500, [4]float64{0, 0, 0, 1}))
	if info.Phase != rollout.PhaseProgressing || info.Reason != rollout.ReasonGateHolding {
		t.Fatalf("v2 drifting during its bake: phase %s reason %s %q", info.Phase, info.Reason, info.Message)
	}
	time.Sleep(350 * time.Millisecond)
	info = report(2, nil)
	if info.Phase != rollout.PhaseRolledBack || !strings.Contains(info.Message, "drift_psi") || info.LastGood != digestOf(1) {
		t.Fatalf("v2 with drifting inputs: phase %s %q (last good %s)", info.Phase, info.Message, info.LastGood)
	}
}

// With action: rollback, a drift alarm after a succeeded rollout sends the
// targets back to the model good before it.
func TestDriftMonitorRollsBack(t *testing.T) {
	ctx := context.Background()
	e := newDriftEnv(t)
	now := time.Now()
	even := [4]float64{.25, .25, .25, .25}
	for n := 1; n <= 2; n++ {
		if err := e.r.Admit(ctx, driftRepoWith(n, ", action: rollback")); err != nil {
			t.Fatal(err)
		}
		e.report(n, nil)
		e.report(n, window(now.Add(time.Duration(n)*time.Second), 400, even))
		time.Sleep(350 * time.Millisecond)
		if info := e.report(n, nil); info.Phase != rollout.PhaseSucceeded {
			t.Fatalf("v%d on training-like inputs: %s %s", n, info.Phase, info.Message)
		}
	}
	info := e.report(2, window(now.Add(3*time.Second), 4000, [4]float64{0, 0, 0, 1}))
	if info.Phase != rollout.PhaseRolledBack || info.LastGood != digestOf(1) || info.Reason != rollout.ReasonMonitor {
		t.Fatalf("v2 after its drift alarm: %s %s %q (last good %s)", info.Phase, info.Reason, info.Message, info.LastGood)
	}
	evs, err := e.st.Events(ctx, fleet.EventFilter{Type: "RolledBack"})
	if err != nil || len(evs) != 1 || evs[0].Reason != rollout.ReasonMonitor {
		t.Fatalf("RolledBack events = %+v, %v", evs, err)
	}
}

// Categorical features are compared with the value counts of the profile's
// categorical column; features the profile lacks are left out.
func TestCompareWindowsCategorical(t *testing.T) {
	ref := &profileEntry{cats: map[string]map[string]int64{"machine": {"pump": 300, "fan": 100}}}
	w := func(c map[string]int64) takenWindow {
		return takenWindow{InputWindow: fleet.InputWindow{Features: map[string]fleet.FeatureHistogram{
			"machine": {Categories: c}, "unknown": {Bounds: []float64{1}, Counts: []int64{5, 5}}}}}
	}
	rep := compareWindows(ref, []takenWindow{w(map[string]int64{"pump": 30, "fan": 10}), w(map[string]int64{"valve": 60})}, 50)
	if len(rep.Features) != 1 || rep.Features[0].Name != "machine" || len(rep.Inconclusive) != 0 {
		t.Fatalf("report = %+v", rep)
	}
	want := drift.CompareCategories(map[string]int64{"pump": 300, "fan": 100}, map[string]int64{"pump": 30, "fan": 10, "valve": 60})
	if got := rep.Features[0].Stats; got != want || got.Samples != 100 || got.PSI < 1 {
		t.Fatalf("machine = %+v, want %+v", got, want)
	}
}
