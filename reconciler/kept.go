package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// metaKept is the store's meta key of the releases removed from the
// repository whose last admitted spec said prune: false.
const metaKept = "kept-releases"

// removeRelease forgets a release removed from the repository and returns
// its events. Its targets stop desiring it: they uninstall it (ReleasePruned)
// unless its last admitted spec said prune: false, when the release joins
// the kept ones that every desired state keeps (fleet.DesiredState.Keep),
// until a later commit admits it again.
func (r *Reconciler) removeRelease(rev source.Revision, name string) []fleet.Event {
	a := r.releases[name].admitted()
	delete(r.releases, name)
	r.staged.deleted = append(r.staged.deleted, name)
	removed := fleet.Event{Type: manifests.EventReleaseRemoved, Release: name, Commit: rev.Commit, Message: "release removed from the repository",
		Key: "removed|" + name + "|" + rev.Commit}
	if a != nil && !a.Release.Spec.Prunes() {
		r.kept[name] = true
		r.stageKept()
		removed.Message += "; kept installed on its targets (prune: false)"
		return []fleet.Event{removed}
	}
	return []fleet.Event{removed, {Type: manifests.EventReleasePruned, Release: name, Commit: rev.Commit,
		Message: "release pruned: its targets no longer desire it and uninstall it", Key: "pruned|" + name + "|" + rev.Commit}}
}

// readmitKept drops from the kept releases those a commit admitted again:
// their spec decides from now on.
func (r *Reconciler) readmitKept() {
	changed := false
	for name := range r.kept {
		if rs := r.releases[name]; rs != nil && rs.admitted() != nil {
			delete(r.kept, name)
			changed = true
		}
	}
	if changed {
		r.stageKept()
	}
}

// stageKept stages the kept releases' write for the admission's commit step.
func (r *Reconciler) stageKept() {
	b, _ := json.Marshal(slices.Sorted(maps.Keys(r.kept)))
	r.staged.meta = append(r.staged.meta, metaWrite{metaKept, b})
}

// loadKept restores the kept releases from the store. A stored list that
// does not decode is an error, not an empty list: keeping nothing would
// have every target uninstall them.
func (r *Reconciler) loadKept(ctx context.Context) error {
	clear(r.kept)
	b, err := r.opts.Store.Meta(ctx, metaKept)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load kept releases: %w", err)
	}
	var names []string
	if err := json.Unmarshal(b, &names); err != nil {
		return fmt.Errorf("load kept releases: %w", err)
	}
	for _, n := range names {
		r.kept[n] = true
	}
	return nil
}

// keepAll names every release a target keeps installed when its desired
// state does not list it: the removed releases kept (prune: false), the
// admitted releases that do not prune (a target their profiles no longer
// select, or one the rollout does not give them to), and releases whose
// record does not decode (stalled: what is installed stays as it is).
func (r *Reconciler) keepAll() []string {
	keep := slices.Collect(maps.Keys(r.kept))
	for name, rs := range r.releases {
		if r.kept[name] {
			continue
		}
		if a := rs.admitted(); rs.rec.Err != nil || a != nil && !a.Release.Spec.Prunes() {
			keep = append(keep, name)
		}
	}
	slices.Sort(keep)
	return keep
}
