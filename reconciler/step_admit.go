package reconciler

import (
	"context"
	"errors"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/source"
)

// admitRetry is how soon admission asks again a registry or dataset store
// that could not be asked.
const admitRetry = 15 * time.Second

// admission is the admission step's verdict on one planned release (the
// same plan.Release cairn plan prints): nil to admit it; Waiting
// (ArtifactUnavailable, requeued after admitRetry) when its registry or a
// dataset store could not be asked, since a policy that reads the size may
// have judged on nothing; Stalling PolicyDenied when a policy denies it;
// Stalling ArtifactMissing when its artifact or a dataset is not there.
// Neither kind overwrites the release admitted before.
func admission(pr plan.Release) error {
	switch {
	case pr.Unavailable != "":
		return &Waiting{Reason: ReasonArtifactUnavailable, RequeueAfter: admitRetry, Err: errors.New(pr.Unavailable)}
	case policies.Denied(pr.Verdicts):
		return &Stalling{Reason: ReasonPolicyDenied, Err: errors.New(denials(pr.Verdicts))}
	case pr.Held != "":
		return &Stalling{Reason: ReasonArtifactMissing, Err: errors.New(pr.Held)}
	}
	return nil
}

// heldBy says whether an admission verdict holds the release for a reason
// other than a policy denial (which admitRelease records as a denial).
func heldBy(err error) (error, bool) {
	var st *Stalling
	if err == nil || (errors.As(err, &st) && st.Reason == ReasonPolicyDenied) {
		return nil, false
	}
	return err, true
}

// hold keeps a release as it was admitted before (or unadmitted) because
// of held: an ArtifactMissing event and lineage denial once per commit and
// reason, no event for a registry that is down (its condition says so and
// the pass requeues).
func (r *Reconciler) hold(ctx context.Context, rev source.Revision, rel manifests.Release, pr plan.Release, rs *releaseState, held error) []fleet.Event {
	name := rel.Metadata.Name
	same := rev.Commit == r.commit && rs.held != nil && rs.held.Error() == held.Error()
	rs.held = held
	var w *Waiting
	if errors.As(held, &w) {
		if !same {
			r.log.Warn("admission waits for the registry", "release", name, "commit", rev.Commit, "err", held, "retry", w.RequeueAfter.String())
		}
		return nil
	}
	if same {
		return nil
	}
	r.record(ctx, lineage.AdmissionFacts{Commit: rev.Commit, Release: name, Model: rel.Spec.Model, ModelDigest: pr.To, Denied: true, Message: held.Error(), Time: time.Now().UTC()})
	return []fleet.Event{{Type: manifests.EventArtifactMissing, Reason: ReasonArtifactMissing, Release: name, Commit: rev.Commit, Message: held.Error()}}
}

// heldCondition is a held release's condition while it keeps the commit
// admitted before: the same reason and requeue as held.
func heldCondition(held error, kept string) error {
	var w *Waiting
	if errors.As(held, &w) {
		return waiting(w.Reason, w.RequeueAfter, "newest commit waits, keeping %s: %s", kept, w.Err)
	}
	var st *Stalling
	if errors.As(held, &st) {
		return stalling(st.Reason, "newest commit held, keeping %s: %s", kept, st.Err)
	}
	return held
}
