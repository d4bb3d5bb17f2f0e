package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/evaluations"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// evalCandidate is a release's candidate as the newest commit declares it,
// admitted or not (an evaluation policy denies it until it is scored):
// what its evaluation runs score it with.
type evalCandidate struct {
	artifact, digest string
	spec             manifests.EvaluationSpec
	dataset, store   string // the holdout's root digest and dataset store
}

// candidateOf is the evaluation candidate of a planned release, nil when
// it declares no evaluation or its holdout is not declared.
func candidateOf(snap *manifests.Snapshot, rel manifests.Release, pr plan.Release) *evalCandidate {
	model, ok := snap.Model(rel.Spec.Model)
	if !ok || pr.To == "" {
		return nil
	}
	spec := manifests.EvaluationOf(rel, model)
	if spec == nil {
		return nil
	}
	ds, ok := snap.Dataset(spec.Dataset)
	if !ok {
		return nil
	}
	return &evalCandidate{artifact: model.Spec.Artifact, digest: pr.To, spec: *spec.DeepCopy(), dataset: ds.Spec.Digest, store: ds.Spec.Store}
}

// champion is the model a release runs live: its rollout's target once it
// succeeded, else the last good one (empty before any rollout succeeded).
func champion(st rollout.State) rollout.Assignment {
	if plan.Champion(st.Target.Digest, st.LastGood.Digest, st.Phase) == st.Target.Digest && st.Target.Digest != "" {
		return st.Target
	}
	return st.LastGood
}

// evalWrite is one change to the evaluation runs, made by the commit step.
type evalWrite struct {
	request, reassign *evaluations.Run
	cancel            string
}

// scheduleEvaluations is the evaluation step: for every release whose
// newest commit declares an evaluation, it keeps one run pending on an
// evaluator agent (cairn.dev/role=evaluator, online), asking a new one
// when the candidate (or its champion) was never scored on the holdout, or
// when the schedule came due since the last run, and cancelling a pending
// run whose models changed. The runs go into the evaluators' desired
// states (compose step); the writes commit with the pass.
func (r *Reconciler) scheduleEvaluations(ctx context.Context, p *pass) error {
	st := r.opts.Evaluations
	if st == nil {
		return nil
	}
	pending, err := st.Pending(ctx)
	if err != nil {
		return err
	}
	if err := r.announceEvaluated(ctx, p, pending); err != nil {
		return err
	}
	if r.last == nil {
		// No commit admitted by this replica yet: the candidates are not
		// known, so the pending runs stay as they are.
		for _, run := range pending {
			p.evalRuns[run.Evaluator] = append(p.evalRuns[run.Evaluator], run.EvaluationRun)
		}
		return nil
	}
	evaluators := r.evaluators(p.now)
	byRelease := map[string][]evaluations.Run{}
	for _, run := range pending {
		byRelease[run.Release] = append(byRelease[run.Release], run)
	}
	keep := func(run evaluations.Run) {
		if len(evaluators) > 0 && !slices.Contains(evaluators, run.Evaluator) {
			run.Evaluator = pick(run.ID, evaluators)
			p.evalWrites = append(p.evalWrites, evalWrite{reassign: &run})
		}
		p.evalRuns[run.Evaluator] = append(p.evalRuns[run.Evaluator], run.EvaluationRun)
	}
	for _, name := range r.names() {
		runs := byRelease[name]
		delete(byRelease, name)
		cand := r.releases[name].candidate
		if cand == nil {
			for _, run := range runs {
				p.evalWrites = append(p.evalWrites, evalWrite{cancel: run.ID})
			}
			continue
		}
		want := r.evalModels(name, cand)
		kept := false
		for _, run := range runs {
			if !kept && sameRun(run, cand, want) {
				keep(run)
				kept = true
				continue
			}
			p.evalWrites = append(p.evalWrites, evalWrite{cancel: run.ID})
		}
		if kept {
			continue
		}
		if err := r.requestRunIfDue(ctx, p, name, cand, want, evaluators); err != nil {
			return err
		}
	}
	for _, runs := range byRelease { // releases no longer declared
		for _, run := range runs {
			p.evalWrites = append(p.evalWrites, evalWrite{cancel: run.ID})
		}
	}
	r.watch(p)
	return nil
}

// requestRunIfDue asks an evaluator for a new run of release name when one
// is due (evaluationDue says why) and an evaluator is online.
func (r *Reconciler) requestRunIfDue(ctx context.Context, p *pass, name string, cand *evalCandidate, want []fleet.EvaluationModel, evaluators []string) error {
	reason, err := r.evaluationDue(ctx, name, cand, want, p.now)
	if err != nil || reason == "" {
		return err
	}
	if len(evaluators) == 0 {
		r.log.Debug("evaluation due, but no evaluator agent is online (label cairn.dev/role=evaluator)", "release", name, "reason", reason)
		return nil
	}
	run := r.newRun(name, cand, want, reason, p.now)
	run.Evaluator = pick(run.ID, evaluators)
	p.evalWrites = append(p.evalWrites, evalWrite{request: &run})
	p.events = append(p.events, fleet.Event{Time: p.now, Type: manifests.EventEvaluationRequested, Release: name, Targets: []string{run.Evaluator},
		Message: fmt.Sprintf("evaluation %s (%s) asked of %s: %s on %s", run.ID, reason, run.Evaluator, modelsText(want), cand.spec.Dataset),
		Key:     "evaluation|" + run.ID})
	p.evalRuns[run.Evaluator] = append(p.evalRuns[run.Evaluator], run.EvaluationRun)
	return nil
}

// announceEvaluated records an Evaluated event, with the verdict, for each
// run pending at the last pass that has been reported since.
func (r *Reconciler) announceEvaluated(ctx context.Context, p *pass, pending []evaluations.Run) error {
	now := map[string]bool{}
	for _, run := range pending {
		now[run.ID] = true
	}
	for _, id := range slices.Sorted(maps.Keys(r.evalPending)) {
		if now[id] {
			continue
		}
		recs, err := r.opts.Evaluations.Records(ctx, id)
		if err != nil {
			return err
		}
		if len(recs) == 1 && recs[0].Done != nil {
			p.events = append(p.events, evaluatedEvent(recs[0]))
		}
	}
	r.noteEvaluations(r.evalPending, now)
	r.evalPending = now
	return nil
}

// watch makes the runs asked this pass announced once reported, however
// soon that is.
func (r *Reconciler) watch(p *pass) {
	for _, w := range p.evalWrites {
		if w.request != nil {
			r.evalPending[w.request.ID] = true
		}
	}
}

// evaluatedEvent is the Evaluated event of a reported run.
func evaluatedEvent(rec fleet.EvaluationRecord) fleet.Event {
	msg := fmt.Sprintf("evaluation %s of %s on %s by %s: ", rec.ID, rec.Release, digest.Short(rec.Dataset), rec.Evaluator)
	reason := ReasonSucceeded
	switch v := rec.Verdict; {
	case v == nil:
		msg += "no verdict"
	case v.Pass:
		msg += "candidate passes: " + v.Summary
	default:
		reason = "EvaluationFailed"
		msg += "candidate fails: " + strings.Join(v.Reasons, "; ")
	}
	return fleet.Event{Time: *rec.Done, Type: manifests.EventEvaluated, Reason: reason, Release: rec.Release, Targets: []string{rec.Evaluator},
		Message: msg, Key: "evaluated|" + rec.ID}
}

// evalModels are the models a run of release scores: the candidate, and
// the champion when one runs live and differs.
func (r *Reconciler) evalModels(name string, cand *evalCandidate) []fleet.EvaluationModel {
	plain := func(a string) bool { return r.opts.PlainHTTP != nil && r.opts.PlainHTTP(a) }
	out := []fleet.EvaluationModel{{Role: fleet.RoleCandidate, Artifact: cand.artifact, Digest: cand.digest, PlainHTTP: plain(cand.artifact)}}
	if ch := champion(r.releases[name].rec.Rollout); ch.Digest != "" && ch.Digest != cand.digest && ch.Artifact != "" {
		out = append(out, fleet.EvaluationModel{Role: fleet.RoleChampion, Artifact: ch.Artifact, Digest: ch.Digest, PlainHTTP: plain(ch.Artifact)})
	}
	return out
}

// sameRun says whether a pending run still scores what is wanted.
func sameRun(run evaluations.Run, cand *evalCandidate, want []fleet.EvaluationModel) bool {
	return run.Dataset == cand.dataset && slices.Equal(run.Command, cand.spec.Command) && slices.Equal(run.Models, want)
}

// evaluationDue says why a new run of release is due ("" when none): a
// model never scored on the holdout, or the schedule's next time since
// the last run has come.
func (r *Reconciler) evaluationDue(ctx context.Context, name string, cand *evalCandidate, want []fleet.EvaluationModel, now time.Time) (string, error) {
	st := r.opts.Evaluations
	for _, m := range want {
		_, ok, err := st.Latest(ctx, m.Digest, cand.dataset)
		if err != nil {
			return "", err
		}
		if !ok {
			return m.Role, nil
		}
	}
	last, err := st.LastRequested(ctx, name)
	if err != nil {
		return "", err
	}
	sched, err := manifests.ParseSchedule(cand.spec.Schedule)
	if err != nil {
		return "", nil // validated at admission; nothing to schedule on
	}
	if !sched.Next(last).After(now) {
		return "schedule", nil
	}
	return "", nil
}

func (r *Reconciler) newRun(name string, cand *evalCandidate, models []fleet.EvaluationModel, reason string, now time.Time) evaluations.Run {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d", name, cand.dataset, reason, now.UnixNano())
	for _, m := range models {
		fmt.Fprintf(h, "\x00%s=%s", m.Role, m.Digest)
	}
	timeout := cand.spec.Timeout.Duration
	if timeout <= 0 {
		timeout = manifests.DefaultEvaluationTimeout
	}
	return evaluations.Run{
		EvaluationRun: fleet.EvaluationRun{ID: "ev-" + hex.EncodeToString(h.Sum(nil))[:16], Release: name, Dataset: cand.dataset,
			Command: slices.Clone(cand.spec.Command), Timeout: timeout, Models: models, Reason: reason, Requested: now.Truncate(time.Microsecond)},
		Store: cand.store, Metrics: cand.spec.Metrics,
	}
}

// evaluators are the online targets labelled cairn.dev/role=evaluator, sorted.
func (r *Reconciler) evaluators(now time.Time) []string {
	var out []string
	for _, id := range r.fleet.order {
		ct := r.fleet.targets[id]
		if ct.labels[manifests.RoleLabel] == manifests.RoleEvaluator && fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter) {
			out = append(out, id)
		}
	}
	return out
}

// pick is the evaluator of a run: the highest rendezvous hash, so runs
// spread over evaluators and a run stays where it is while its evaluator is.
func pick(run string, evaluators []string) string {
	best, bestH := "", ""
	for _, e := range evaluators {
		h := sha256.Sum256([]byte(run + "\x00" + e))
		if s := hex.EncodeToString(h[:8]); s > bestH {
			best, bestH = e, s
		}
	}
	return best
}

func modelsText(ms []fleet.EvaluationModel) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += " and "
		}
		s += m.Role + " " + digest.Short(m.Digest)
	}
	return s
}

// writeEvaluations makes the pass's evaluation writes, in the commit step's
// transaction.
func (r *Reconciler) writeEvaluations(ctx context.Context, ws []evalWrite) error {
	st := r.opts.Evaluations
	for _, w := range ws {
		var err error
		switch {
		case w.request != nil:
			err = st.Request(ctx, *w.request)
		case w.reassign != nil:
			err = st.Reassign(ctx, *w.reassign)
		case w.cancel != "":
			err = st.Cancel(ctx, w.cancel)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// evaluationResults reads the evaluation store for admission's policy
// input (plan.EvaluationResults).
type evaluationResults struct{ st *evaluations.Store }

func (e evaluationResults) LatestEvaluation(ctx context.Context, modelDigest, datasetDigest string) (*policies.EvaluatedModel, error) {
	res, ok, err := e.st.Latest(ctx, modelDigest, datasetDigest)
	if err != nil || !ok {
		return nil, err
	}
	return &policies.EvaluatedModel{Digest: res.Digest, Evaluated: true, Metrics: res.Metrics, Error: res.Error, TimeNs: res.Time.UnixNano(), Run: res.Run}, nil
}
