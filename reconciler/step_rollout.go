package reconciler

import (
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// stepRollout is the rollout step of one release: rollout.Step over the
// selected targets (unless the release is suspended), keeping the new state
// and assignments, the engine's events and, for each rollback, its lineage
// edge for the commit step.
func (r *Reconciler) stepRollout(name string, rs *releaseState, res *stepResult, command string, p *pass) {
	a := rs.admitted()
	if a.Release.Spec.Suspend {
		return
	}
	out := rollout.Step(rollout.Input{Now: p.now, Release: a.Release, Model: a.Model, Policy: a.Policy, Targets: res.selected,
		Prev: rs.rec.Rollout, Command: command})
	res.stepped = true
	rs.rec.Rollout = out.State
	rs.assign = out.Desired
	p.wantRequeue(out.RequeueAfter)
	for _, e := range out.Events {
		ev := fleet.Event{Time: p.now, Type: e.Type, Reason: e.Reason, Release: name, Commit: a.Commit, Message: e.Message, Targets: e.Targets,
			Key: eventKey(out.State, e)}
		p.events = append(p.events, ev)
		if e.Type == manifests.EventRolledBack {
			st := out.State
			p.rollbacks = append(p.rollbacks, lineage.RollbackFacts{Release: name, Rollout: st.Key(), From: st.Target.Digest, To: st.LastGood.Digest,
				Targets: e.Targets, Time: p.now, Reason: e.Reason})
		}
	}
}
