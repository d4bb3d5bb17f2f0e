package reconciler

import (
	"maps"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// selectTargets is the select step of one release: the targets its profiles
// select that can take its model, each with its report for the release and
// its gate metrics (the target's own and its input drift). It returns the
// operator command to run, which a drift monitor may turn into an abort.
func (r *Reconciler) selectTargets(name string, rs *releaseState, p *pass) ([]rollout.TargetState, string) {
	a := rs.admitted()
	command := p.commands[name]
	selected := make([]rollout.TargetState, 0, len(r.fleet.order))
	for _, id := range r.fleet.order {
		ct := r.fleet.targets[id]
		if _, unfit := a.Unfit[id]; unfit || !matchesAny(a.Profiles, ct.sel) {
			continue
		}
		ts := rollout.TargetState{Name: id, TimeZone: timeZone(ct.facts), LastSeen: ct.lastSeen,
			Online: fleetstate.Online(ct.lastSeen, p.now, r.opts.OfflineAfter)}
		if ct.status != nil {
			ts.Metrics, ts.ReportedAt = ct.status.Metrics, ct.status.Time
			if ts.ReportedAt.IsZero() {
				ts.ReportedAt = ct.lastSeen // a device without a clock
			}
			for _, s := range ct.status.Releases {
				if s.Release == name {
					ts.Status = s
				}
			}
		}
		// Drift metrics are plain gate inputs, next to the target's own.
		if dm, evs, abort := r.observeDrift(a, id, ts.Status, p.now); len(dm) > 0 || len(evs) > 0 {
			if len(dm) > 0 {
				m := make(map[string]float64, len(ts.Metrics)+len(dm))
				maps.Copy(m, ts.Metrics)
				maps.Copy(m, dm)
				ts.Metrics = m
			}
			for i := range evs {
				evs[i].Commit = a.Commit
			}
			p.events = append(p.events, evs...)
			if abort && command == "" {
				// action: rollback — a rollout in progress is aborted, a
				// succeeded one goes back to the model good before it.
				switch rs.rec.Rollout.Phase {
				case rollout.PhaseProgressing, rollout.PhasePaused:
					command = rollout.CommandAbort
				case rollout.PhaseSucceeded:
					command = rollout.CommandRollback
				}
			}
		}
		selected = append(selected, ts)
	}
	return selected, command
}

// timeZone is the facts' time zone ("" without facts).
func timeZone(f *fleet.Facts) string {
	if f == nil {
		return ""
	}
	return f.TimeZone
}
