package reconciler

import (
	"context"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// summarise is the status step, the one place a release's status is
// written: its conditions and counters from what the steps before found,
// once per pass. Releases whose record changed are handed to the commit
// step. A release whose record does not decode keeps its Stalled status
// and is never rewritten. The fleet's phase gauges (phaseMetrics) are set
// after the commit step, once the desired states are served.
func (r *Reconciler) summarise(_ context.Context, p *pass) error {
	for _, name := range r.names() {
		rs := r.releases[name]
		if rs.rec.Err != nil {
			continue
		}
		p.wantRequeue(requeueOf(rs.held))
		switch {
		case rs.admitted() == nil && rs.denied == "" && rs.held != nil:
			r.summariseHeld(name, rs)
		case rs.admitted() == nil:
			r.summariseDenied(name, rs)
		default:
			r.summariseRelease(name, rs, p.results[name], p)
		}
		if storedKey(rs.rec) != rs.stored {
			p.records = append(p.records, name)
		}
	}
	p.events = append(p.events, r.offline(p.now)...)
	return nil
}

// summariseHeld is the status of a release no commit of which was admitted
// because admission holds it (step_admit.go).
func (r *Reconciler) summariseHeld(name string, rs *releaseState) {
	markError(rs.cond, heldCondition(rs.held, "nothing"))
	info := fleet.ReleaseInfo{Conditions: rs.cond.Wire()}
	info.Name, info.Phase, info.Message = name, rollout.PhaseHeld, rs.held.Error()
	rs.rec.Status = info
}

// summariseDenied is the status of a release no commit of which was
// admitted: a policy denied each.
func (r *Reconciler) summariseDenied(name string, rs *releaseState) {
	markError(rs.cond, stalling(ReasonPolicyDenied, "commit %s denied: %s", digest.Short(r.commit), rs.denied))
	info := fleet.ReleaseInfo{Denied: rs.denied, Conditions: rs.cond.Wire()}
	info.Name, info.Phase = name, rollout.PhaseDenied
	rs.rec.Status = info
}

// releaseCondition is the rollout's state as conditions: nil when ready,
// errSucceeded and errProgressing aside, a Waiting or Stalling error.
func releaseCondition(rs *releaseState, selected int) error {
	a, s := rs.admitted(), rs.rec.Rollout
	if rs.denied != "" {
		return stalling(ReasonPolicyDenied, "newest commit denied, keeping %s: %s", digest.Short(a.Commit), rs.denied)
	}
	if rs.held != nil {
		return heldCondition(rs.held, digest.Short(a.Commit))
	}
	if a.Release.Spec.Suspend {
		return waiting(ReasonSuspended, 0, "release is suspended: targets keep what they were told")
	}
	switch s.Phase {
	case rollout.PhasePaused:
		return waiting(ReasonPaused, 0, "rollout paused: %s", s.Message)
	case rollout.PhaseAborted:
		return stalling(ReasonAborted, "rollout aborted: %s", s.Message)
	case rollout.PhaseRolledBack:
		return stalling(ReasonRolledBack, "rolled back: %s", s.Message)
	}
	return nil
}

func (r *Reconciler) summariseRelease(name string, rs *releaseState, res *stepResult, p *pass) {
	a, s := rs.admitted(), rs.rec.Rollout
	var selected []rollout.TargetState
	if res != nil {
		selected = res.selected
	}
	if err := releaseCondition(rs, len(selected)); err != nil {
		markError(rs.cond, err)
	} else if s.Phase == rollout.PhaseSucceeded {
		markReady(rs.cond, ReasonSucceeded, "%s rolled out to %d targets", digest.Digest(s.Target.Digest).ShortHex(), len(selected))
	} else if res != nil && res.stepped {
		markReconciling(rs.cond, ReasonProgressing, "wave %d: %s", s.Wave+1, s.Message)
	}
	info := fleet.ReleaseInfo{Model: a.Model.Metadata.Name, Version: a.Model.Spec.Version, Artifact: a.Model.Spec.Artifact,
		RolloutPolicy: a.Release.Spec.RolloutPolicy, Waves: len(a.Policy.Spec.Waves), Suspended: a.Release.Spec.Suspend, Targets: len(selected),
		Denied: rs.denied}
	for _, pr := range a.Profiles {
		info.Profiles = append(info.Profiles, pr.Metadata.Name)
	}
	info.Name, info.Digest, info.LastGood, info.Phase, info.Wave = name, s.Target.Digest, s.LastGood.Digest, s.Phase, s.Wave
	info.Reason, info.Message, info.Commit = s.Reason, s.Message, a.Commit
	healthyAll := len(selected) > 0
	for _, ts := range selected {
		if rs.assign[ts.Name].Digest == s.Target.Digest && s.Target.Digest != "" {
			info.Updated++
		}
		switch {
		case (ts.Status.Phase == fleet.PhaseHealthy || ts.Status.Phase == fleet.PhaseRolledBack) && ts.Status.Digest == s.Target.Digest:
			info.Healthy++
		case ts.Status.Phase == fleet.PhaseFailed:
			info.Failed++
			healthyAll = false
		default:
			healthyAll = false
		}
	}
	if healthyAll {
		since := p.now
		if old := rs.rec.Status.HealthySince; old != nil {
			since = *old
		}
		info.HealthySince = &since
	}
	info.Conditions = rs.cond.Wire()
	names := make([]string, len(selected))
	for i, ts := range selected {
		names[i] = ts.Name
	}
	window, _, _ := driftConfig(a.Release)
	info.Drift = r.driftInfo(name, names, window)
	rs.rec.Status = info
	r.opts.Metrics.RolloutWave.WithLabelValues(name).Set(float64(s.Wave))
	if len(selected) > 0 {
		r.opts.Metrics.RolloutProgress.WithLabelValues(name).Set(float64(info.Updated) / float64(len(selected)))
	}
}
