package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// pass is one reconcile pass: what each step reads from the ones before it
// and the writes the commit step makes at the end (records, desired states,
// events, lineage edges, consumed commands, queued alerts and the staged
// writes of an admission), so that they commit together.
type pass struct {
	now      time.Time
	commands map[string]string // release → operator command run this pass
	consumed []int64           // ids of the commands run (or refused) this pass
	// results of the rollout step, by release; absent: not stepped
	// (never admitted, or a record that does not decode).
	results   map[string]*stepResult
	changes   []store.Desired // desired states whose tag changed
	records   []string        // releases whose record changed
	events    []fleet.Event
	rollbacks []lineage.RollbackFacts
	admission *stagedAdmission // writes of the admission this pass follows; nil when none
	requeue   time.Duration
	errs      []error // typed per-release errors, returned after the commit
	// evalRuns are the evaluation runs of each evaluator agent (evaluate
	// step), evalWrites the changes to the stored runs.
	evalRuns   map[string][]fleet.EvaluationRun
	evalWrites []evalWrite
}

// stagedAdmission is what Admit writes, staged for the commit step of its pass:
// the events, lineage and stored values of the admitted commit and the
// releases it removed.
type stagedAdmission struct {
	commit  string
	events  []fleet.Event
	facts   []lineage.AdmissionFacts
	deleted []string
	meta    []metaWrite
	written bool // committed
}

// metaWrite is one named value for Store.PutMeta.
type metaWrite struct {
	key   string
	value []byte
}

// stepResult is what the select and rollout steps found for one release.
type stepResult struct {
	selected []rollout.TargetState
	stepped  bool // the engine ran (not suspended)
}

// wantRequeue keeps the soonest requeue asked for.
func (p *pass) wantRequeue(d time.Duration) {
	if d > 0 && (p.requeue == 0 || d < p.requeue) {
		p.requeue = d
	}
}

// Reconcile runs one pass.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.reloadIfStale(ctx); err != nil {
		return err
	}
	return r.reconcileLocked(ctx)
}

// reloadIfStale reloads the state from the store after a pass whose commit
// failed: the state in memory moved on, the stored one did not, and the
// step is run again from the stored one (its keyed events then once).
func (r *Reconciler) reloadIfStale(ctx context.Context) error {
	if !r.reload {
		return nil
	}
	if err := r.loadLocked(ctx); err != nil {
		return err
	}
	r.reload = false
	return nil
}

// reconcileLocked runs the steps of a pass in order: take the operator's
// commands, read the fleet, then for every release select its targets and
// step its rollout, compose the desired states, summarise every release's
// status once, and commit what the pass wrote. Steps return errors and
// never write status; a release's own failure is a typed error (Stalling,
// Waiting) on its conditions and in the returned error, not a stop.
func (r *Reconciler) reconcileLocked(ctx context.Context) (err error) {
	start := time.Now()
	p := &pass{now: time.Now().UTC(), commands: map[string]string{}, results: map[string]*stepResult{}, admission: r.staged,
		evalRuns: map[string][]fleet.EvaluationRun{}}
	defer r.noteSettled() // which reports trigger the next pass (reportfilter.go)
	defer func() {
		r.opts.Metrics.ReconcileDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			r.opts.Metrics.ReconcileErrors.Inc()
		}
	}()
	steps := []struct {
		name string
		run  func(context.Context, *pass) error
	}{
		{"take commands", r.takeCommands},
		{"read targets", func(ctx context.Context, _ *pass) error { return r.freshSync(ctx) }},
		{"read training profiles", func(ctx context.Context, p *pass) error { r.loadProfiles(ctx, p.now); return nil }},
		{"step rollouts", r.stepRollouts},
		{"schedule evaluations", r.scheduleEvaluations},
		{"compose desired states", r.composeDesired},
		{"summarise status", r.summarise},
		{"commit", r.commitPass},
	}
	for _, s := range steps {
		if err := s.run(ctx, p); err != nil {
			// Nothing of the pass was stored: its changes in memory are
			// dropped, and the next pass starts from the store.
			r.reload = true
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	// Only gauges, off the path from a webhook to the desired states
	// served (about 0.1 s at 100,000 targets).
	r.phaseMetrics(p.now)
	r.requeue = p.requeue
	r.log.Debug("pass", "took", time.Since(start).String(), "desired", len(p.changes), "records", len(p.records), "events", len(p.events))
	return errors.Join(p.errs...)
}

// takeCommands reads the pending operator commands: the oldest of each
// release runs this pass, the others stay queued for the next passes, so
// each one runs (or is reported ignored) in order. The commit step
// consumes those run, with the state they changed.
func (r *Reconciler) takeCommands(ctx context.Context, p *pass) error {
	cmds, err := r.opts.Store.Commands(ctx)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		if _, ok := p.commands[c.Release]; ok {
			p.wantRequeue(r.opts.MinGap)
			continue
		}
		p.commands[c.Release] = c.Command
		p.consumed = append(p.consumed, c.ID)
	}
	return nil
}

// stepRollouts runs, for every admitted release in order, the select and
// rollout steps.
func (r *Reconciler) stepRollouts(_ context.Context, p *pass) error {
	for _, name := range r.names() {
		rs := r.releases[name]
		if rs.rec.Err != nil || rs.admitted() == nil {
			continue
		}
		res := &stepResult{}
		var command string
		res.selected, command = r.selectTargets(name, rs, p)
		r.stepRollout(name, rs, res, command, p)
		p.results[name] = res
	}
	// A command no rollout step ran is consumed and said so.
	for _, name := range slices.Sorted(maps.Keys(p.commands)) {
		if res := p.results[name]; res == nil || !res.stepped {
			p.events = append(p.events, fleet.Event{Time: p.now, Type: manifests.EventCommandIgnored, Release: name,
				Message: fmt.Sprintf("%s ignored: release %s has no rollout to act on (not admitted, suspended or undecodable)", p.commands[name], name)})
		}
	}
	return nil
}

// commitPass is the commit step: in one transaction (Store.Atomic, whose
// fencing check comes first), the staged admission, the records that
// changed, the consumed commands, the desired states, the lineage edges,
// the events and the alerts they queue. Only once it committed are the
// desired states handed to the fleet API: whatever an agent is told is
// stored, so another replica (or this one after a restart) never serves it
// an older state, and a deposed leader's refused write reaches no agent.
// When it fails nothing was written and the next pass starts again from
// the store.
func (r *Reconciler) commitPass(ctx context.Context, p *pass) error {
	if len(p.changes) > 0 && r.leaseLapsed(ctx) {
		return fmt.Errorf("write desired states: lease lapsed: %w", store.ErrFenced)
	}
	events := p.events
	if a := p.admission; a != nil {
		events = append(slices.Clip(a.events), p.events...)
	}
	if p.admission == nil && len(p.records) == 0 && len(p.consumed) == 0 && len(p.changes) == 0 && len(p.rollbacks) == 0 &&
		len(r.driftFacts) == 0 && len(events) == 0 && len(p.evalWrites) == 0 {
		r.publishRolloutIDs()
		return nil // nothing to write: no transaction
	}
	var rev int64
	err := r.opts.Store.Atomic(ctx, func(ctx context.Context) error {
		if a := p.admission; a != nil {
			if err := r.writeAdmission(ctx, a); err != nil {
				return err
			}
		}
		for _, name := range p.records {
			if err := r.opts.Store.PutRecord(ctx, r.releases[name].rec); err != nil {
				return fmt.Errorf("save release %s: %w", name, err)
			}
		}
		if err := r.opts.Store.ConsumeCommands(ctx, p.consumed); err != nil {
			return err
		}
		if err := r.writeEvaluations(ctx, p.evalWrites); err != nil {
			return err
		}
		if len(p.changes) > 0 {
			var err error
			if rev, err = r.opts.Store.PutDesired(ctx, p.changes); err != nil {
				return err
			}
		}
		if r.opts.Lineage != nil {
			for _, f := range p.rollbacks {
				if err := r.opts.Lineage.RecordRollback(ctx, f); err != nil {
					if !errors.Is(err, lineage.ErrInvalid) {
						return fmt.Errorf("record rollback of %s in lineage: %w", f.Release, err)
					}
					p.errs = append(p.errs, fmt.Errorf("record rollback of %s in lineage: %w", f.Release, err))
				}
			}
		}
		r.recordDrift(ctx)
		if err := r.opts.Store.AddEvents(ctx, events); err != nil {
			return err
		}
		return r.notify(ctx, events)
	})
	if err != nil {
		r.reload = true
		return err
	}
	for _, name := range p.records {
		rs := r.releases[name]
		rs.stored = storedKey(rs.rec)
	}
	if a := p.admission; a != nil {
		a.written = true
		r.opts.Metrics.AdmittedCommit.Reset()
		r.opts.Metrics.AdmittedCommit.WithLabelValues(a.commit).Set(1)
	}
	// Before any agent is told of a new rollout: its reports name it.
	r.publishRolloutIDs()
	if len(p.changes) > 0 {
		for i := range p.changes {
			p.changes[i].Rev = rev
			r.fleet.written[p.changes[i].Target] = p.changes[i].ETag
		}
		r.opts.Publish(p.changes)
		r.opts.Metrics.DesiredPublished.Add(float64(len(p.changes)))
		r.opts.Metrics.DesiredWrites.Add(float64(len(p.changes)))
		r.log.Info("desired states written", "targets", len(p.changes), "revision", rev)
	}
	return nil
}

// publishRolloutIDs makes the stored rollouts' keys (rollout.State.Key)
// what RolloutID answers: after a pass committed and once the state is
// loaded, so that a replica that just started (waiting out a dead
// leader's lease) names the rollouts of the reports it receives.
func (r *Reconciler) publishRolloutIDs() {
	ids := make(map[string]string, len(r.releases))
	for name, rs := range r.releases {
		ids[name] = rs.rec.Rollout.Key()
	}
	r.rollouts.Store(&ids)
}

// followRollouts is publishRolloutIDs for a replica that does not lead:
// the stored rollouts' keys, which the leader moves on.
func (r *Reconciler) followRollouts(ctx context.Context) {
	recs, err := r.opts.Store.Records(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("read the rollouts while following", "err", err)
		}
		return
	}
	ids := make(map[string]string, len(recs))
	for _, rec := range recs {
		ids[rec.Name] = rec.Rollout.Key()
	}
	r.rollouts.Store(&ids)
}

// writeAdmission makes an admission's staged writes, in the commit step's
// transaction.
func (r *Reconciler) writeAdmission(ctx context.Context, a *stagedAdmission) error {
	for _, name := range a.deleted {
		if err := r.opts.Store.DeleteRelease(ctx, name); err != nil {
			return err
		}
	}
	for _, m := range a.meta {
		if err := r.opts.Store.PutMeta(ctx, m.key, m.value); err != nil {
			return err
		}
	}
	if r.opts.Lineage != nil {
		for _, f := range a.facts {
			if err := r.opts.Lineage.RecordAdmission(ctx, f); err != nil {
				if !errors.Is(err, lineage.ErrInvalid) {
					return fmt.Errorf("record admission of %s in lineage: %w", f.Release, err)
				}
				r.log.Warn("record admission in lineage", "release", f.Release, "err", err)
			}
		}
	}
	return nil
}
