package reconciler

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/source"
)

// admitGates is what the last admission of the admitted commit read, so
// that a denied release is evaluated again only when something its gates
// read changed (see readmitDue), not over the whole fleet every interval.
type admitGates struct {
	inputs   admitInputs // what the last admission was planned against
	deadline time.Time   // when a time-based gate of a denied release may lift; zero: none known
	evals    uint64      // counts evaluation runs reported or dropped (announceEvaluated)
}

// admitInputs are the inputs of an admission besides the commit's files
// and the registries: the target set and what plan reads of each target
// (a generation counter), the live state of every admitted release, and
// the evaluation results.
type admitInputs struct {
	commit   string
	targets  uint64
	releases string
	evals    uint64
}

// readmitSafety is the longest a denied release goes without being
// evaluated again: what no input tracks (a tag moved in a registry, a
// dataset profile) is seen within it.
const readmitSafety = 5 * time.Minute

// admitInputsNow returns the current inputs. Called with r.mu held.
func (r *Reconciler) admitInputsNow() admitInputs {
	var b strings.Builder
	for _, name := range r.names() {
		rs := r.releases[name]
		if rs.admitted() == nil {
			continue
		}
		st := rs.rec.Rollout
		since := int64(0)
		if hs := rs.rec.Status.HealthySince; hs != nil {
			since = hs.UnixNano()
		}
		fmt.Fprintf(&b, "%s\x00%s\x00%s\x00%s\x00%d\x00", name, st.Target.Digest, st.LastGood.Digest, st.Phase, since)
	}
	return admitInputs{commit: r.commit, targets: r.fleet.gen, releases: b.String(), evals: r.gates.evals}
}

// readmitDue returns the last admitted commit when it should be evaluated
// again: a release of it is held (an artifact not found, a registry down)
// and the requeue its admission error asks for (requeueOf) or the interval
// passed; or a release is denied and, at most once an interval, something
// its gates read changed (the targets, the live state of a release, an
// evaluation result), the deadline of a time-based gate passed, or
// readmitSafety passed.
func (r *Reconciler) readmitDue() *source.Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	var after time.Duration
	denied := false
	for _, rs := range r.releases {
		if rs.denied == "" && rs.held == nil {
			continue
		}
		if rs.held == nil {
			denied = true
			continue
		}
		d := requeueOf(rs.held)
		if d <= 0 || d > r.opts.Interval {
			d = r.opts.Interval
		}
		if after == 0 || d < after {
			after = d
		}
	}
	since := time.Since(r.readmit)
	switch {
	case after != 0:
		if since < after {
			return nil
		}
	case !denied || since < r.opts.Interval:
		return nil
	case since >= readmitSafety:
	case !r.gates.deadline.IsZero() && !time.Now().Before(r.gates.deadline):
	case r.admitInputsNow() != r.gates.inputs:
	default:
		return nil
	}
	return r.last
}

// gateDeadline is the earliest time a time-based gate of a release p denies
// may lift, from the live state inv it was planned against; zero when no
// denial waits for time alone. A denial by a repository policy that reads
// the time (policies.Engine.ReadsTime) may lift at any time: it is due
// again after an interval. promotion lifts when the release it waits for
// has been healthy on the same digest for healthyFor.
func gateDeadline(snap *manifests.Snapshot, p *plan.Plan, inv *fleet.Inventory, engine *policies.Engine, now time.Time, interval time.Duration) time.Time {
	var at time.Time
	soonest := func(t time.Time) {
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	live := map[string]fleet.ReleaseState{}
	for _, s := range inv.Releases {
		live[s.Name] = s
	}
	for _, pr := range p.Releases {
		if !policies.Denied(pr.Verdicts) {
			continue
		}
		if slices.ContainsFunc(pr.Verdicts, func(v policies.Verdict) bool {
			return v.Result == policies.Deny && engine.ReadsTime(v.Policy)
		}) {
			soonest(now.Add(interval))
		}
		rel, ok := snap.Release(pr.Name)
		if !ok || rel.Spec.After == nil {
			continue
		}
		s, ok := live[rel.Spec.After.Release]
		if ok && s.HealthySince != nil && s.Digest == pr.To {
			soonest(s.HealthySince.Add(rel.Spec.After.HealthyFor.Duration))
		}
	}
	return at
}

// noteEvaluations counts the evaluation runs pending at the last pass that
// are no longer (reported, cancelled): a verdict a denial waits for.
func (r *Reconciler) noteEvaluations(before, now map[string]bool) {
	for id := range maps.Keys(before) {
		if !now[id] {
			r.gates.evals++
			return
		}
	}
}

// admissionChanged reports whether t (with selector labels sel) differs
// from ct's target in what plan reads of a target: its labels, its
// selector labels and the facts of its class (policies.ClassFacts).
func admissionChanged(ct *cachedTarget, t fleet.Target, sel map[string]string) bool {
	a, b := ct.facts, &t.Facts
	if a == nil {
		a = &fleet.Facts{}
	}
	return !maps.Equal(ct.labels, t.Labels) || !maps.Equal(ct.sel, sel) ||
		a.Arch != b.Arch || a.OS != b.OS || a.OSVersion != b.OSVersion || a.Memory != b.Memory ||
		!slices.Equal(a.Accelerators, b.Accelerators)
}
