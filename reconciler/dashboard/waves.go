package dashboard

import (
	"slices"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// stateCounts counts targets by where they are in a rollout.
type stateCounts struct {
	Healthy, Installing, Downloading, Pending, Failed, Waiting int
}

func (s stateCounts) total() int {
	return s.Healthy + s.Installing + s.Downloading + s.Pending + s.Failed + s.Waiting
}

func (s *stateCounts) add(o stateCounts) {
	s.Healthy += o.Healthy
	s.Installing += o.Installing
	s.Downloading += o.Downloading
	s.Pending += o.Pending
	s.Failed += o.Failed
	s.Waiting += o.Waiting
}

// waveCount is one wave of a rollout: its targets by state.
type waveCount struct {
	stateCounts
	Number  int // from 1
	Percent int
	Targets int
	Started bool // the rollout has reached this wave
	Current bool
}

// waveStates is a release's selected targets by state, in all and per wave.
// Targets told to run the digest count by phase; those not told yet are
// pending in a started wave and waiting in a later one.
type waveStates struct {
	stateCounts
	Waves []waveCount
	// Worst holds, per gated metric, the worst latest value among the
	// targets running the digest.
	Worst map[string]float64
}

// releaseStates splits the targets a release's profiles select into the
// policy's waves, in the order the rollout engine uses, and counts each
// wave's targets by state.
func (c *cache) releaseStates(rec record.Release, digest string, current int) waveStates {
	c.mu.RLock()
	defer c.mu.RUnlock()
	s := waveStates{Worst: map[string]float64{}}
	var waves []manifests.Wave
	var gates []manifests.Gate
	profiles := map[string]bool{}
	var unfit map[string]string
	if a := rec.Admitted; a != nil {
		waves, gates, unfit = a.Policy.Spec.Waves, a.Policy.Spec.Gates, a.Unfit
		for _, p := range a.Profiles {
			profiles[p.Metadata.Name] = true
		}
	}
	var ids []string
	for _, r := range c.byName {
		if r.Pending {
			continue
		}
		if _, no := unfit[r.ID]; no {
			continue
		}
		if slices.ContainsFunc(r.Profiles, func(p string) bool { return profiles[p] }) {
			ids = append(ids, r.ID)
		}
	}
	if len(waves) == 0 {
		waves = []manifests.Wave{{Percent: 100}}
	}
	for i, members := range rollout.AssignWaves(rec.Name, waves, ids) {
		wc := waveCount{Number: i + 1, Percent: waves[i].Percent, Targets: len(members), Started: i <= current, Current: i == current}
		if i == len(waves)-1 {
			wc.Percent = 100
		}
		for _, id := range members {
			r := c.rows[id]
			if r == nil {
				continue
			}
			wc.stateCounts.add(targetState(r, rec.Name, digest, wc.Started))
			if digest != "" && r.Running[rec.Name] == digest {
				worst(s.Worst, gates, r.Metrics)
			}
		}
		s.stateCounts.add(wc.stateCounts)
		s.Waves = append(s.Waves, wc)
	}
	return s
}

// targetState is one target's place in the rollout of digest.
func targetState(r *row, release, digest string, started bool) stateCounts {
	var s stateCounts
	if digest == "" || r.Desired[release] != digest {
		if started {
			s.Pending = 1
		} else {
			s.Waiting = 1
		}
		return s
	}
	switch ph := r.Phases[release]; {
	case ph == fleet.PhaseHealthy && r.Running[release] == digest:
		s.Healthy = 1
	case ph == fleet.PhaseFailed || ph == fleet.PhaseRolledBack:
		s.Failed = 1
	case ph == fleet.PhaseDownloading:
		s.Downloading = 1
	case ph == fleet.PhaseInstalling || ph == fleet.PhaseVerifying:
		s.Installing = 1
	default:
		s.Pending = 1
	}
	return s
}

// worst keeps per gated metric the worst of the values seen.
func worst(into map[string]float64, gates []manifests.Gate, metrics map[string]float64) {
	for _, g := range gates {
		v, ok := metrics[g.Metric]
		if !ok {
			continue
		}
		w, seen := into[g.Metric]
		if !seen || (g.Max != nil && v > w) || (g.Max == nil && g.Min != nil && v < w) {
			into[g.Metric] = v
		}
	}
}
