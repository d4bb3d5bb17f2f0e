package rollout_test

import (
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// A first rollout to four targets in two waves: the first wave gets the
// model, the others nothing yet; Step asks to run again when the bake ends.
func ExampleStep() {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	in := rollout.Input{
		Now:     now,
		Release: manifests.Release{Metadata: manifests.ObjectMeta{Name: "bearing-prod"}},
		Policy: manifests.RolloutPolicy{Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{
			{Percent: 25, Bake: manifests.Duration{Duration: 30 * time.Minute}}, {Percent: 100},
		}}},
		Targets: []rollout.TargetState{{Name: "a", Online: true}, {Name: "b", Online: true}, {Name: "c", Online: true}, {Name: "d", Online: true}},
	}
	in.Model.Spec.Artifact = "reg.example/models/bearing@sha256:" + fmt.Sprintf("%064x", 1)
	out := rollout.Step(in)
	fmt.Println(out.State.Phase, "wave", out.State.Wave+1, "of", out.State.Waves)
	fmt.Println(len(out.Desired), "target(s) told to install")
	for _, e := range out.Events {
		fmt.Println(e.Type+":", e.Message)
	}
	// Output:
	// Progressing wave 1 of 2
	// 1 target(s) told to install
	// RolloutStarted: rolling out sha256:000000000000 to 4 targets in 2 waves
	// WaveStarted: wave 1 of 2 started: 1 targets
}
