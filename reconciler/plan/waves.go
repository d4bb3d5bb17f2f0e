package plan

import (
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// waves assigns the fit targets to the rollout policy's waves
// (rollout.AssignWaves, as the engine does), each with the gates that hold
// it (rollout.WaveGates).
func waves(release string, policy manifests.RolloutPolicy, fit []string) []Wave {
	spec := policy.Spec.Waves
	var out []Wave
	assigned := rollout.AssignWaves(release, spec, fit)
	for i, ws := range assigned {
		w := Wave{Percent: 100, Targets: ws, Gates: rollout.WaveGates(policy, i)}
		if i < len(spec) && i < len(assigned)-1 {
			w.Percent = min(max(spec[i].Percent, 0), 100)
		}
		if i < len(spec) && spec[i].Bake.Duration > 0 {
			w.Bake = shortDuration(spec[i].Bake.Duration)
		}
		out = append(out, w)
	}
	return out
}
