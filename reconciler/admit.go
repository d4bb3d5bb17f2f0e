package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
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

// Admitted is what admission keeps of one release: the objects of the
// commit that admitted it. Stored as the release's Spec.
type Admitted struct {
	Commit   string                    `json:"commit"`
	Release  manifests.Release         `json:"release"`
	Model    manifests.Model           `json:"model"`
	Policy   manifests.RolloutPolicy   `json:"policy"`
	Profiles []manifests.DeviceProfile `json:"profiles"`
	// Unfit maps targets that cannot take the model to the reason.
	Unfit map[string]string `json:"unfit,omitempty"`
	// Datasets are the model's trainedOn datasets: drift compares live
	// inputs with the first one that has a profile.
	Datasets []manifests.Dataset `json:"datasets,omitempty"`
}

// Admit decodes, evaluates and plans a fetched commit. A commit that does
// not decode leaves every admitted release as it was and marks the source
// not ready with the reason; a release a policy denies keeps its previously
// admitted version and records a PolicyDenied event.
func (r *Reconciler) Admit(ctx context.Context, rev source.Revision) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetched = rev.Commit
	if r.behind(rev) {
		return r.refuseBehind(ctx, rev)
	}
	t0 := time.Now()
	snap, err := manifests.Load(rev.FS)
	if err != nil {
		return r.rejectCommit(ctx, rev, ReasonValidationFailed, err)
	}
	// The repository's policies live under policies/ (as for cairn plan).
	var pfs fs.FS
	if fi, err := fs.Stat(rev.FS, "policies"); err == nil && fi.IsDir() {
		if pfs, err = fs.Sub(rev.FS, "policies"); err != nil {
			return r.rejectCommit(ctx, rev, ReasonPolicyFailed, err)
		}
	}
	engine, err := policies.Compile(ctx, pfs)
	if err != nil {
		return r.rejectCommit(ctx, rev, ReasonPolicyFailed, err)
	}
	if err := r.syncTargets(ctx); err != nil {
		return err
	}
	t1 := time.Now()
	inv := r.inventory()
	p, err := plan.Compute(ctx, snap, inv, plan.Options{Policies: engine, Live: true})
	if err != nil {
		return r.rejectCommit(ctx, rev, ReasonValidationFailed, fmt.Errorf("plan: %w", err))
	}
	planned := map[string]plan.Release{}
	for _, pr := range p.Releases {
		planned[pr.Name] = pr
	}
	var events []fleet.Event
	seen := map[string]bool{}
	for _, rel := range snap.Releases() {
		name := rel.Metadata.Name
		seen[name] = true
		pr := planned[name]
		st := r.status(name)
		if policies.Denied(pr.Verdicts) {
			msg := denials(pr.Verdicts)
			// Re-evaluating the same commit (see readmitDue) reports a
			// denial once, not on every pass.
			if rev.Commit != r.commit || r.denied[name] == "" {
				events = append(events, fleet.Event{Type: manifests.EventPolicyDenied, Reason: ReasonPolicyDenied, Release: name, Commit: rev.Commit, Message: msg})
				r.record(ctx, lineage.AdmissionFacts{Commit: rev.Commit, Release: name, Model: rel.Spec.Model, ModelDigest: pr.To, Denied: true, Message: msg, Time: time.Now().UTC()})
			}
			markFailed(st, true, ReasonPolicyDenied, "commit %s denied: %s", digest.Short(rev.Commit), msg)
			r.denied[name] = msg
			if _, ok := r.admitted[name]; !ok {
				// Never admitted: keep a record so the status API shows the denial.
				r.admitted[name] = nil
			}
			continue
		}
		delete(r.denied, name)
		model, _ := snap.Model(rel.Spec.Model)
		a := &Admitted{Commit: rev.Commit, Release: rel, Model: model}
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
		prev := r.admitted[name]
		if prev == nil || prev.Model.Spec.Artifact != model.Spec.Artifact {
			events = append(events, fleet.Event{Type: manifests.EventReleaseAdmitted, Reason: ReasonSucceeded, Release: name, Commit: rev.Commit,
				Message: fmt.Sprintf("admitted %s %s (%s)", model.Metadata.Name, model.Spec.Version, model.Spec.Artifact),
				Key:     admittedKey(name, rev.Commit, model.Spec.Artifact)})
			facts := lineage.AdmissionFacts{Commit: rev.Commit, Release: name, Model: model.Metadata.Name, ModelDigest: pr.To, Time: time.Now().UTC()}
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
			r.record(ctx, facts)
		}
		r.admitted[name] = a
		r.rememberTraining(a)
	}
	for name := range r.admitted {
		if !seen[name] {
			delete(r.admitted, name)
			delete(r.states, name)
			delete(r.relStatus, name)
			delete(r.denied, name)
			events = append(events, fleet.Event{Type: manifests.EventReleaseRemoved, Release: name, Commit: rev.Commit, Message: "release removed from the repository"})
			if err := r.opts.Store.DeleteRelease(ctx, name); err != nil {
				return err
			}
		}
	}
	r.commit = rev.Commit
	r.last, r.readmit = &rev, time.Now()
	r.alerts = snap.Alerts()
	if b, err := json.Marshal(r.alerts); err == nil {
		if err := r.opts.Store.PutMeta(ctx, "alerts", b); err != nil {
			return err
		}
	}
	markReady(r.source, ReasonSucceeded, "admitted commit %s: %s", digest.Short(rev.Commit), snap.Summary())
	if err := r.opts.Store.PutMeta(ctx, "admitted-commit", []byte(rev.Commit)); err != nil {
		return err
	}
	r.saveSource(ctx)
	r.opts.Metrics.AdmittedCommit.Reset()
	r.opts.Metrics.AdmittedCommit.WithLabelValues(rev.Commit).Set(1)
	if err := r.opts.Store.AddEvents(ctx, events); err != nil {
		return err
	}
	r.notify(events)
	r.log.Info("commit admitted", "commit", rev.Commit, "releases", len(snap.Releases()), "denied", len(r.denied),
		"decode", t1.Sub(t0).String(), "plan", time.Since(t1).String())
	return r.reconcileLocked(ctx)
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

// rejectCommit keeps the last good state and says why on the source.
func (r *Reconciler) rejectCommit(ctx context.Context, rev source.Revision, reason string, err error) error {
	msg := err.Error()
	if len(msg) > 4000 {
		msg = msg[:4000] + "…"
	}
	markFailed(r.source, true, reason, "commit %s rejected, still serving %s: %s", digest.Short(rev.Commit), digest.Short(r.commit), msg)
	r.saveSource(ctx)
	ev := fleet.Event{Type: manifests.EventCommitRejected, Reason: reason, Commit: rev.Commit, Message: msg}
	r.opts.Store.AddEvents(ctx, []fleet.Event{ev})
	r.log.Warn("commit rejected", "commit", rev.Commit, "reason", reason, "err", msg)
	return nil
}

// FetchFailed records a failed fetch on the source's conditions.
func (r *Reconciler) FetchFailed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	markFailed(r.source, false, ReasonFetchFailed, "fetch failed, still serving %s: %v", digest.Short(r.commit), err)
	r.opts.Metrics.SourceFetches.WithLabelValues("error").Inc()
	r.saveSource(context.Background())
}

func (r *Reconciler) saveSource(ctx context.Context) {
	b, _ := json.Marshal(r.source.Wire())
	if err := r.opts.Store.PutMeta(ctx, "source-conditions", b); err != nil {
		r.log.Warn("save source conditions", "err", err)
	}
}

// SourceInfo is the source's state for the status API.
func (r *Reconciler) SourceInfo() fleet.SourceInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	si := fleet.SourceInfo{Commit: r.fetched, Admitted: r.commit, Conditions: r.source.Wire()}
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
	if err := r.opts.Lineage.RecordAdmission(ctx, f); err != nil {
		r.log.Warn("record admission in lineage", "release", f.Release, "err", err)
	}
}

// inventory is the live fleet as plan.Compute reads it.
func (r *Reconciler) inventory() *fleet.Inventory {
	inv := &fleet.Inventory{Commit: r.commit, Targets: make([]fleet.Target, 0, len(r.targets))}
	for _, t := range r.order {
		ct := r.targets[t]
		inv.Targets = append(inv.Targets, ct.target)
	}
	for name, st := range r.states {
		inv.Releases = append(inv.Releases, fleet.ReleaseState{Name: name, Digest: st.Target.Digest, LastGood: st.LastGood.Digest, Phase: st.Phase, Wave: st.Wave,
			HealthySince: r.prevHealthySince(name)})
	}
	return inv
}
