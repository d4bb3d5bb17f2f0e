package rollout

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// BenchmarkStep100k is one Step over 100,000 targets in the middle of a
// rollout (half of them on the new model, a thousand updating).
func BenchmarkStep100k(b *testing.B) {
	const n = 100_000
	in := Input{Now: t0, Release: manifests.Release{Metadata: manifests.ObjectMeta{Name: "r"}},
		Policy: manifests.RolloutPolicy{Spec: manifests.RolloutPolicySpec{Waves: waves(time.Hour, 1, 10, 50, 100), MaxUnavailable: "1%",
			Gates: []manifests.Gate{{Metric: "error_rate", Max: ptr(0.1)}}}}}
	in.Model.Spec.Artifact = "reg/m@" + d2
	in.Prev = State{Release: "r", Target: Assignment{Digest: d2}, LastGood: Assignment{Digest: d1}, Phase: PhaseProgressing, Wave: 2, Started: t0, WaveStarted: t0}
	for i := range n {
		ts := TargetState{Name: fmt.Sprintf("dev-%06d", i), Online: true, Metrics: map[string]float64{"error_rate": 0.01},
			Status: fleet.ReleaseStatus{Phase: fleet.PhaseHealthy, Digest: d1, Desired: d1}}
		if i%2 == 0 {
			ts.Status.Digest, ts.Status.Desired = d2, d2
		}
		if i%100 == 1 {
			ts.Status.Phase, ts.Status.Desired = fleet.PhaseDownloading, d2
			in.Prev.Updating = append(in.Prev.Updating, ts.Name)
		}
		in.Targets = append(in.Targets, ts)
	}
	b.ResetTimer()
	for range b.N {
		Step(in)
	}
}
