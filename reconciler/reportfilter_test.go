package reconciler

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// TestStatusBurstTriggersNoPass: while a rollout progresses every report
// asks for a pass; once the release succeeded, a burst of reports that
// repeat the targets' last ones asks for none (the interval's pass takes
// them), as does a target's first healthy report; a report that changes
// a phase, a digest or the facts a pass reads, a first one that is not
// healthy, one after a long silence or one with input windows asks for
// one. Every report reaches the next pass either way.
func TestStatusBurstTriggersNoPass(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"dev-1", "dev-2", "dev-3"}
	for _, id := range ids {
		st.EnrollTarget(ctx, store.Target{ID: id, Name: id, Labels: map[string]string{"env": "prod"}, CredHash: "h-" + id})
	}
	r := New(Options{Store: st, OfflineAfter: time.Minute})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Admit(ctx, repoAt(1)); err != nil {
		t.Fatal(err)
	}
	triggered := func() bool {
		select {
		case <-r.trigger:
			return true
		default:
			return false
		}
	}
	triggered()
	facts := fleet.Facts{Arch: "arm64", OS: "linux", DiskFree: 1 << 30}
	report := func(phase, digest string, f fleet.Facts) fleet.StatusReport {
		return fleet.StatusReport{Time: time.Now(), Facts: &f,
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: phase, Digest: digest}},
			Metrics:  map[string]float64{"cpu_percent": 20}}
	}
	at := time.Now().UTC()
	tick := func() time.Time { at = at.Add(time.Millisecond); return at }

	// Rolling out: every report triggers, also one that repeats the last.
	for range 2 {
		r.Observe("dev-1", report(fleet.PhaseHealthy, digestOf(1), facts), tick())
		if !triggered() {
			t.Fatal("a report during a rollout triggered no pass")
		}
	}
	for _, id := range ids {
		r.Observe(id, report(fleet.PhaseHealthy, digestOf(1), facts), tick())
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if ph := r.releases["r"].rec.Rollout.Phase; ph != rollout.PhaseSucceeded || !r.settled.Load() {
		t.Fatalf("after every target reported healthy: phase %s, settled %v; want Succeeded, settled", ph, r.settled.Load())
	}
	triggered()

	// Settled: a burst of unchanged reports (metrics, times and disk free
	// change) triggers nothing, and the pass still sees the newest.
	for i := range 3000 {
		f := facts
		f.DiskFree -= int64(i)
		rep := report(fleet.PhaseHealthy, digestOf(1), f)
		rep.Metrics["cpu_percent"] = float64(i % 100)
		r.Observe(ids[i%len(ids)], rep, tick())
		if triggered() {
			t.Fatalf("unchanged report %d triggered a pass", i)
		}
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.fleet.targets["dev-3"].lastSeen; !got.Equal(at) {
		t.Errorf("dev-3 last seen %v after the pass, want its last report's %v", got, at)
	}

	// What changes a pass's input triggers one.
	changed := []struct {
		name string
		id   string
		rep  fleet.StatusReport
		at   time.Time
	}{
		{"phase", "dev-1", report(fleet.PhaseFailed, digestOf(1), facts), tick()},
		{"back to healthy", "dev-1", report(fleet.PhaseHealthy, digestOf(1), facts), tick()},
		{"digest", "dev-2", report(fleet.PhaseHealthy, digestOf(2), facts), tick()},
		{"facts", "dev-3", report(fleet.PhaseHealthy, digestOf(1), fleet.Facts{Arch: "amd64", OS: "linux"}), tick()},
		{"first report installing", "dev-4", report(fleet.PhaseInstalling, digestOf(1), facts), tick()},
		{"after a silence", "dev-1", report(fleet.PhaseHealthy, digestOf(1), facts), at.Add(time.Minute)},
	}
	for _, c := range changed {
		r.Observe(c.id, c.rep, c.at)
		if !triggered() {
			t.Errorf("a report changing the %s triggered no pass", c.name)
		}
	}
	// A target's first report since start, healthy, waits for the interval.
	r.Observe("dev-5", report(fleet.PhaseHealthy, digestOf(1), facts), at.Add(time.Minute))
	if triggered() {
		t.Error("a target's first healthy report triggered a pass")
	}
	inputs := report(fleet.PhaseHealthy, digestOf(1), facts)
	inputs.Releases[0].Inputs = &fleet.InputWindow{Start: at, End: at.Add(time.Second)}
	r.Observe("dev-4", inputs, at.Add(time.Minute+time.Second))
	if !triggered() {
		t.Error("a report with input windows triggered no pass")
	}
}
