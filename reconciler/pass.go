package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// pass is one reconcile pass: what each step reads from the ones before it
// and the writes the commit step makes at the end (records, desired states,
// events, lineage edges), so that they can be committed together.
type pass struct {
	now      time.Time
	commands map[string]string // release → operator command taken this pass
	// results of the rollout step, by release; absent: not stepped
	// (never admitted, or a record that does not decode).
	results   map[string]*stepResult
	changes   []store.Desired // desired states whose tag changed
	records   []string        // releases whose record changed
	events    []fleet.Event
	rollbacks []lineage.RollbackFacts
	requeue   time.Duration
	errs      []error // typed per-release errors, returned after the commit
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
	return r.reconcileLocked(ctx)
}

// reconcileLocked runs the steps of a pass in order: take the operator's
// commands, read the fleet, then for every release select its targets and
// step its rollout, compose the desired states, summarise every release's
// status once, and commit what the pass wrote. Steps return errors and
// never write status; a release's own failure is a typed error (Stalling,
// Waiting) on its conditions and in the returned error, not a stop.
func (r *Reconciler) reconcileLocked(ctx context.Context) (err error) {
	start := time.Now()
	p := &pass{now: time.Now().UTC(), commands: map[string]string{}, results: map[string]*stepResult{}}
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
		{"read targets", func(ctx context.Context, _ *pass) error { return r.syncTargets(ctx) }},
		{"read training profiles", func(ctx context.Context, p *pass) error { r.loadProfiles(ctx, p.now); return nil }},
		{"step rollouts", r.stepRollouts},
		{"compose desired states", r.composeDesired},
		{"summarise status", r.summarise},
		{"commit", r.commitPass},
	}
	for _, s := range steps {
		if err := s.run(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	r.requeue = p.requeue
	r.log.Debug("pass", "took", time.Since(start).String(), "desired", len(p.changes), "records", len(p.records), "events", len(p.events))
	return errors.Join(p.errs...)
}

// takeCommands consumes the pending operator commands (the last per release).
func (r *Reconciler) takeCommands(ctx context.Context, p *pass) error {
	cmds, err := r.opts.Store.TakeCommands(ctx)
	if err != nil {
		return err
	}
	for _, c := range cmds {
		p.commands[c.Release] = c.Command
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
	return nil
}

// commitPass is the commit step: it writes what the pass changed, records
// first, then desired states (then handed to the fleet API), lineage edges
// and events. Helper h16 makes it one transaction.
func (r *Reconciler) commitPass(ctx context.Context, p *pass) error {
	for _, name := range p.records {
		rs := r.releases[name]
		if err := r.opts.Store.PutRecord(ctx, rs.rec); err != nil {
			return fmt.Errorf("save release %s: %w", name, err)
		}
		rs.stored = storedKey(rs.rec)
	}
	if len(p.changes) > 0 {
		if leaseLapsed(ctx) {
			return fmt.Errorf("write desired states: lease lapsed: %w", store.ErrFenced)
		}
		// Store first, then hand to the fleet API: whatever an agent is
		// told is stored, so another replica (or this one after a restart,
		// or a new leader) never serves it an older state, and a deposed
		// leader's refused write reaches no agent.
		rev, err := r.opts.Store.PutDesired(ctx, p.changes)
		if err != nil {
			return err
		}
		for i := range p.changes {
			p.changes[i].Rev = rev
			r.fleet.written[p.changes[i].Target] = p.changes[i].ETag
		}
		r.opts.Publish(p.changes)
		r.opts.Metrics.DesiredPublished.Add(float64(len(p.changes)))
		r.opts.Metrics.DesiredWrites.Add(float64(len(p.changes)))
		r.log.Info("desired states written", "targets", len(p.changes), "revision", rev)
	}
	if r.opts.Lineage != nil {
		for _, f := range p.rollbacks {
			if err := r.opts.Lineage.RecordRollback(ctx, f); err != nil {
				p.errs = append(p.errs, fmt.Errorf("record rollback of %s in lineage: %w", f.Release, err))
			}
		}
	}
	r.recordDrift(ctx)
	if len(p.events) > 0 {
		if err := r.opts.Store.AddEvents(ctx, p.events); err != nil {
			return err
		}
		r.notify(p.events)
	}
	ids := make(map[string]string, len(r.releases))
	for name, rs := range r.releases {
		ids[name] = rs.rec.Rollout.ID()
	}
	r.rollouts.Store(&ids)
	return nil
}
