package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/source"
)

// Admit decodes, evaluates and plans a fetched commit, then runs a pass. A
// commit that does not decode leaves every admitted release as it was and
// marks the source not ready with the reason; a release a policy denies
// (or whose policies time out) keeps its previously admitted version and
// records a PolicyDenied event; a release whose stored record does not
// decode stays as it is. Decoding, compiling the policies and planning
// (registry checks, policy evaluation) run without the reconciler's lock:
// a slow policy or registry holds no pass. Admissions run one at a time.
func (r *Reconciler) Admit(ctx context.Context, rev source.Revision) error {
	r.admitMu.Lock()
	defer r.admitMu.Unlock()
	inv, inputs, done, err := r.admitBegin(ctx, rev)
	if err != nil || done {
		return err
	}
	t0 := time.Now()
	snap, engine, perr := r.readCommit(ctx, rev)
	t1 := time.Now()
	var p *plan.Plan
	if perr == nil {
		popts := plan.Options{Policies: engine, Live: true, Inspector: r.opts.Inspector, Datasets: r.opts.Datasets, OnInput: r.opts.OnInput}
		if r.opts.Evaluations != nil {
			popts.Evaluations = evaluationResults{r.opts.Evaluations}
		}
		p, err = plan.Compute(ctx, snap, inv, popts)
		if err != nil {
			perr = stalling(ReasonValidationFailed, "plan: %w", err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p != nil {
		inputs.commit = rev.Commit
		r.gates.inputs, r.gates.deadline = inputs, gateDeadline(snap, p, inv, engine, t1, r.opts.Interval)
	}
	return r.admitPlanned(ctx, rev, snap, p, perr, t1.Sub(t0), time.Since(t1))
}

// keepPending keeps rev for the next pass of this replica when nothing of
// its admission was stored (a failed write, a lost lease). Called with
// r.mu held.
func (r *Reconciler) keepPending(rev source.Revision) {
	if r.pending == nil {
		r.pending = &rev
	}
}

// admitBegin starts an admission under r.mu: it notes the fetched commit,
// refuses one behind the admitted commit (done) and reads the fleet; it
// returns the inventory the commit is planned against and the inputs it
// holds (readmitDue).
func (r *Reconciler) admitBegin(ctx context.Context, rev source.Revision) (inv *fleet.Inventory, in admitInputs, done bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		if err != nil {
			r.keepPending(rev)
		}
	}()
	if err := r.reloadIfStale(ctx); err != nil {
		return nil, in, false, err
	}
	r.src.setFetched(rev.Commit)
	if r.behind(rev) {
		return nil, in, true, r.refuseBehind(ctx, rev)
	}
	if err := r.syncTargets(ctx); err != nil {
		return nil, in, false, err
	}
	r.fleet.admitted = time.Now()
	return r.inventory(), r.admitInputsNow(), false, nil
}

// admitPlanned ends an admission under r.mu with the commit's plan (or the
// error that rejects it): it admits or denies each release, removes those
// the commit dropped and runs a pass, whose commit step stores it all.
func (r *Reconciler) admitPlanned(ctx context.Context, rev source.Revision, snap *manifests.Snapshot, p *plan.Plan, perr error, decode, planned time.Duration) (err error) {
	stored := false
	defer func() {
		// Nothing of the admission was stored (a failed write, a lost
		// lease): it is tried again when this replica next passes.
		if err != nil && !stored {
			r.keepPending(rev)
		}
	}()
	// Meanwhile a pass may have failed (the state is reloaded) or another
	// leader admitted a later commit (this replica loaded it when elected).
	if err := r.reloadIfStale(ctx); err != nil {
		return err
	}
	if r.behind(rev) {
		return r.refuseBehind(ctx, rev)
	}
	if perr != nil {
		return r.rejectCommit(ctx, rev, perr)
	}
	byName := map[string]plan.Release{}
	for _, pr := range p.Releases {
		byName[pr.Name] = pr
	}
	// From here the admission's writes are staged, and made in the
	// transaction of the pass below (its commit step).
	r.staged = &stagedAdmission{}
	defer func() { stored, r.staged = r.staged.written, nil }()
	var events []fleet.Event
	seen := map[string]bool{}
	for _, rel := range snap.Releases() {
		seen[rel.Metadata.Name] = true
		events = append(events, r.admitRelease(ctx, rev, snap, rel, byName[rel.Metadata.Name])...)
	}
	for _, name := range r.names() {
		if !seen[name] {
			events = append(events, r.removeRelease(rev, name)...)
		}
	}
	r.readmitKept()
	r.recordAdmitted(ctx, rev, snap, events)
	r.log.Info("commit admitted", "commit", rev.Commit, "releases", len(snap.Releases()),
		"decode", decode.String(), "plan", planned.String())
	return r.reconcileLocked(ctx)
}

// readCommit decodes a commit's manifests and compiles its policies (where
// cairn plan and cairn policy test find them: policies.RepoFS).
func (r *Reconciler) readCommit(ctx context.Context, rev source.Revision) (*manifests.Snapshot, *policies.Engine, error) {
	snap, err := manifests.Load(rev.FS)
	if err != nil {
		return nil, nil, &Stalling{Reason: ReasonValidationFailed, Err: err}
	}
	pfs, err := policies.RepoFS(rev.FS)
	if err != nil {
		return nil, nil, &Stalling{Reason: ReasonPolicyFailed, Err: err}
	}
	engine, err := policies.Compile(ctx, pfs, policies.WithEvalTimeout(r.opts.PolicyTimeout))
	if err != nil {
		return nil, nil, &Stalling{Reason: ReasonPolicyFailed, Err: err}
	}
	return snap, engine, nil
}

// admitRelease admits one release of a commit, or records its denial; it
// returns the events to record.
func (r *Reconciler) admitRelease(ctx context.Context, rev source.Revision, snap *manifests.Snapshot, rel manifests.Release, pr plan.Release) []fleet.Event {
	name := rel.Metadata.Name
	rs := r.release(name)
	if rs.rec.Err != nil {
		r.log.Warn("release record does not decode: not admitting it", "release", name, "err", rs.rec.Err)
		return nil
	}
	rs.candidate = candidateOf(snap, rel, pr)
	verdict := admission(pr)
	if held, ok := heldBy(verdict); ok {
		return r.hold(ctx, rev, rel, pr, rs, held)
	}
	rs.held = nil
	if policies.Denied(pr.Verdicts) {
		msg := denials(pr.Verdicts)
		var events []fleet.Event
		// Re-evaluating the same commit (see readmitDue) reports a
		// denial once, not on every pass.
		if rev.Commit != r.commit || rs.denied == "" {
			events = append(events, fleet.Event{Type: manifests.EventPolicyDenied, Reason: ReasonPolicyDenied, Release: name, Commit: rev.Commit, Message: msg})
			r.record(ctx, lineage.AdmissionFacts{Commit: rev.Commit, Release: name, Model: rel.Spec.Model, ModelDigest: pr.To, Denied: true, Message: msg, Time: time.Now().UTC()})
		}
		rs.denied = msg
		return events
	}
	rs.denied = ""
	a := snapshotOf(rev.Commit, snap, rel, pr)
	prev := rs.admitted()
	rs.rec.Admitted = a
	r.rememberTraining(a)
	if prev != nil && prev.Model.Spec.Artifact == a.Model.Spec.Artifact {
		return nil
	}
	model := a.Model
	r.record(ctx, admissionFacts(rev.Commit, snap, name, model, pr.To))
	return []fleet.Event{{Type: manifests.EventReleaseAdmitted, Reason: ReasonSucceeded, Release: name, Commit: rev.Commit,
		Message: fmt.Sprintf("admitted %s %s (%s)", model.Metadata.Name, model.Spec.Version, model.Spec.Artifact),
		Key:     admittedKey(name, rev.Commit, model.Spec.Artifact)}}
}

// snapshotOf is what admission keeps of a release: the objects it names.
func snapshotOf(commit string, snap *manifests.Snapshot, rel manifests.Release, pr plan.Release) *Admitted {
	model, _ := snap.Model(rel.Spec.Model)
	a := &Admitted{Commit: commit, Release: rel, Model: model}
	for _, d := range model.Spec.TrainedOn {
		if ds, ok := snap.Dataset(d); ok {
			a.Datasets = append(a.Datasets, ds)
		}
	}
	if rel.Spec.RolloutPolicy != "" {
		a.Policy, _ = snap.RolloutPolicy(rel.Spec.RolloutPolicy)
	}
	for _, t := range rel.Spec.Targets {
		if dp, ok := snap.DeviceProfile(t.Profile); ok {
			a.Profiles = append(a.Profiles, dp)
		}
	}
	for _, u := range pr.Unfit {
		if a.Unfit == nil {
			a.Unfit = map[string]string{}
		}
		a.Unfit[u.Target] = u.Reason
	}
	return a
}

// admissionFacts is the lineage of an admission: the model, its training
// datasets and its evaluations.
func admissionFacts(commit string, snap *manifests.Snapshot, release string, model manifests.Model, modelDigest string) lineage.AdmissionFacts {
	facts := lineage.AdmissionFacts{Commit: commit, Release: release, Model: model.Metadata.Name, ModelDigest: modelDigest, Time: time.Now().UTC()}
	for _, d := range model.Spec.TrainedOn {
		if ds, ok := snap.Dataset(d); ok {
			if facts.Datasets == nil {
				facts.Datasets = map[string]string{}
			}
			facts.Datasets[d] = ds.Spec.Digest
		}
	}
	for _, e := range model.Spec.EvaluatedOn {
		ev := lineage.Evaluation{Dataset: e.Dataset, Metrics: e.Metrics}
		if ds, ok := snap.Dataset(e.Dataset); ok {
			ev.Digest = ds.Spec.Digest
		}
		facts.Evaluations = append(facts.Evaluations, ev)
	}
	return facts
}

// recordAdmitted records that rev is the admitted commit: its alerts, the
// source's conditions, the commit itself and the admission's events, staged
// for the commit step of the pass that follows.
func (r *Reconciler) recordAdmitted(ctx context.Context, rev source.Revision, snap *manifests.Snapshot, events []fleet.Event) {
	r.commit = rev.Commit
	r.last, r.readmit = &rev, time.Now()
	r.alerts = snap.Alerts()
	if b, err := json.Marshal(r.alerts); err == nil {
		r.staged.meta = append(r.staged.meta, metaWrite{"alerts", b})
	}
	r.src.setAdmitted(rev.Commit)
	r.markSource(ctx, func(st *Status, _ string) {
		markReady(st, ReasonSucceeded, "admitted commit %s: %s", digest.Short(rev.Commit), snap.Summary())
	})
	r.staged.meta = append(r.staged.meta, metaWrite{"admitted-commit", []byte(rev.Commit)})
	r.staged.commit = rev.Commit
	r.staged.events = events
}

func denials(vs []policies.Verdict) string {
	var msgs []string
	for _, v := range vs {
		if v.Result == policies.Deny {
			msgs = append(msgs, v.Policy+": "+v.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

// rejectCommit keeps the last good state and says why on the source: the
// source's conditions, a CommitRejected event and the alerts (and commit
// status) it queues, written in one transaction. The event is keyed by commit and reason, so a rejection
// evaluated again (after a restart, by a new leader, or a retry of a write
// that failed) is recorded once. A failed write is returned: Admit then
// keeps the commit pending and the next pass rejects it again.
func (r *Reconciler) rejectCommit(ctx context.Context, rev source.Revision, err error) error {
	reason := ReasonValidationFailed
	if st, ok := err.(*Stalling); ok {
		reason = st.Reason
	}
	msg := err.Error()
	if len(msg) > 4000 {
		msg = msg[:4000] + "…"
	}
	conds := r.src.mark(func(st *Status, admitted string) {
		markFailed(st, true, reason, "commit %s rejected, still serving %s: %s", digest.Short(rev.Commit), digest.Short(admitted), msg)
	})
	ev := fleet.Event{Type: manifests.EventCommitRejected, Reason: reason, Commit: rev.Commit, Message: msg, Key: rejectedKey(rev.Commit, reason)}
	err = r.opts.Store.Atomic(ctx, func(ctx context.Context) error {
		if err := r.putSourceConditions(ctx, conds); err != nil {
			return err
		}
		if err := r.opts.Store.AddEvents(ctx, []fleet.Event{ev}); err != nil {
			return err
		}
		return r.notify(ctx, []fleet.Event{ev})
	})
	if err != nil {
		return fmt.Errorf("record rejection of commit %s: %w", digest.Short(rev.Commit), err)
	}
	r.log.Warn("commit rejected", "commit", rev.Commit, "reason", reason, "err", msg)
	return nil
}

// rejectedKey identifies the rejection of a commit for a reason.
func rejectedKey(commit, reason string) string { return "rejected|" + commit + "|" + reason }

// FetchFailed records a failed fetch on the source's conditions. It takes
// no lock a pass holds.
func (r *Reconciler) FetchFailed(err error) {
	r.opts.Metrics.SourceFetches.WithLabelValues("error").Inc()
	r.markSource(context.Background(), func(st *Status, admitted string) {
		markFailed(st, false, ReasonFetchFailed, "fetch failed, still serving %s: %v", digest.Short(admitted), err)
	})
}

// SourceInfo is the source's state for the status API; it never waits for
// a fetch or a pass.
func (r *Reconciler) SourceInfo() fleet.SourceInfo {
	si := r.src.info()
	if r.opts.Source != nil {
		si.URL, si.Branch = r.opts.Source.URL(), r.opts.Source.Branch()
		_, at, _ := r.opts.Source.State()
		if !at.IsZero() {
			si.FetchedAt = &at
		}
	}
	return si
}

func (r *Reconciler) record(ctx context.Context, f lineage.AdmissionFacts) {
	if r.opts.Lineage == nil {
		return
	}
	if r.staged != nil {
		r.staged.facts = append(r.staged.facts, f)
		return
	}
	if err := r.opts.Lineage.RecordAdmission(ctx, f); err != nil {
		r.log.Warn("record admission in lineage", "release", f.Release, "err", err)
	}
}

// inventory is the live fleet as plan.Compute reads it.
func (r *Reconciler) inventory() *fleet.Inventory {
	inv := &fleet.Inventory{Commit: r.commit, Targets: make([]fleet.Target, 0, len(r.fleet.targets))}
	for _, t := range r.fleet.order {
		inv.Targets = append(inv.Targets, r.fleet.targets[t].target(t))
	}
	for _, name := range r.names() {
		rs := r.releases[name]
		if rs.admitted() == nil {
			continue
		}
		st := rs.rec.Rollout
		inv.Releases = append(inv.Releases, fleet.ReleaseState{Name: name, Digest: st.Target.Digest, LastGood: st.LastGood.Digest, Phase: st.Phase, Wave: st.Wave,
			HealthySince: rs.rec.Status.HealthySince})
	}
	return inv
}
