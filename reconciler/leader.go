package reconciler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// EventCommitBehind says the followed branch moved back to a commit that
// Git history places behind the admitted one (a force-push back): it is not
// admitted; a rollback in Git is a new commit (git revert).
const EventCommitBehind = "CommitBehind"

// ReasonHistoryRewound is the reason of EventCommitBehind.
const ReasonHistoryRewound = "HistoryRewound"

type leaseKey struct{}

// campaign takes or renews the leader lease every LeaseRenew until ctx
// ends, on its own goroutine, whatever a pass is doing meanwhile. A newly
// won lease triggers a pass, whose first step reloads the state another
// leader may have moved on. Each attempt gives up after LeaseRenew, so one
// stuck attempt cannot outlast the lease: the next tick tries again.
func (r *Reconciler) campaign(ctx context.Context) {
	t := time.NewTicker(r.opts.LeaseRenew)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, r.opts.LeaseRenew)
		l, err := r.opts.Store.Lead(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				// Keep the old lease: its Until lapses on its own.
				r.log.Warn("leader lease", "err", err)
			}
		} else {
			r.leaseMu.Lock()
			prev := r.lease
			r.lease = l
			r.leaseMu.Unlock()
			switch {
			case l.Held && (!prev.Held || prev.Term != l.Term):
				r.log.Info("won the leader lease", "term", l.Term)
				r.Trigger()
			case !l.Held && prev.Held:
				r.log.Warn("lost the leader lease", "term", prev.Term, "holder", l.Holder, "newTerm", l.Term)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leadCtx returns ctx fenced by the lease when this replica holds a valid
// lease on which its state was loaded (Run's election step).
func (r *Reconciler) leadCtx(ctx context.Context) (context.Context, bool) {
	r.leaseMu.Lock()
	l, loaded := r.lease, r.loadedTerm
	r.leaseMu.Unlock()
	if !l.Valid() || loaded != l.Term {
		return ctx, false
	}
	return context.WithValue(r.opts.Store.Fenced(ctx, l), leaseKey{}, l), true
}

// leaseLapsed reports whether ctx runs under a lease that is no longer
// valid on this process's clock: a leader frozen (SIGSTOP, a long GC, a
// VM pause) past its lease must not hand desired states to agents before
// its fenced write is refused. The lease renewed since ctx was made (by
// campaign, meanwhile) counts: a pass may take longer than the lease lives,
// and lapses only when the renewals stopped or another term began.
func (r *Reconciler) leaseLapsed(ctx context.Context) bool {
	l, ok := ctx.Value(leaseKey{}).(store.Lease)
	if !ok {
		return false
	}
	r.leaseMu.Lock()
	cur := r.lease
	r.leaseMu.Unlock()
	return !cur.Valid() || cur.Term != l.Term
}

// elected runs when Run first passes under a new term: reload the state
// and refresh a commit fetched while following, which may be older than
// the one the previous leader admitted.
func (r *Reconciler) elected(ctx context.Context, term int64) error {
	if err := r.Load(ctx); err != nil {
		return fmt.Errorf("load state as new leader: %w", err)
	}
	r.mu.Lock()
	pending := r.pending
	admitted := r.commit
	r.mu.Unlock()
	if pending != nil && pending.Commit != admitted && r.opts.Source != nil {
		head, err := r.opts.Source.Head(ctx)
		if err != nil {
			// Admit nothing fetched before the last leader's admission
			// could be checked; the next fetch delivers the head.
			r.mu.Lock()
			r.pending = nil
			r.mu.Unlock()
			r.log.Warn("refresh the branch head as new leader", "err", err)
		} else {
			r.mu.Lock()
			r.pending = &head
			r.mu.Unlock()
		}
	}
	r.leaseMu.Lock()
	r.loadedTerm = term
	r.leaseMu.Unlock()
	r.log.Info("leading the reconcile loop", "term", term, "admitted", digest.Short(admitted))
	return nil
}

// behind reports whether Git history places rev behind the admitted
// commit. Called with r.mu held.
func (r *Reconciler) behind(rev source.Revision) bool {
	if r.commit == "" || rev.Commit == r.commit || r.opts.Source == nil {
		return false
	}
	ok, err := r.opts.Source.IsAncestor(rev.Commit, r.commit)
	if err != nil {
		// The admitted commit is not in this clone's history (a rewritten
		// branch): rev is new.
		return false
	}
	return ok
}

// refuseBehind records, once per commit, that rev is behind the admitted
// commit and is not admitted. Called with r.mu held.
func (r *Reconciler) refuseBehind(ctx context.Context, rev source.Revision) error {
	conds := r.src.mark(func(st *Status, admitted string) {
		markFailed(st, false, ReasonHistoryRewound, "branch moved back to %s, behind the admitted %s: not admitted; roll back with a new commit (git revert)", digest.Short(rev.Commit), digest.Short(admitted))
	})
	if b, err := r.opts.Store.Meta(ctx, "refused-behind"); err == nil && string(b) == rev.Commit {
		if err := r.putSourceConditions(ctx, conds); err != nil {
			r.log.Warn("save source conditions", "err", err)
		}
		return nil
	}
	ev := fleet.Event{Type: EventCommitBehind, Reason: ReasonHistoryRewound, Commit: rev.Commit,
		Message: fmt.Sprintf("branch moved back to %s, which Git history places behind the admitted %s (a force-push back): not admitted; to roll back, push a new commit (git revert)", digest.Short(rev.Commit), digest.Short(r.commit))}
	err := r.opts.Store.Atomic(ctx, func(ctx context.Context) error {
		if err := r.putSourceConditions(ctx, conds); err != nil {
			return err
		}
		if err := r.opts.Store.AddEvents(ctx, []fleet.Event{ev}); err != nil {
			return err
		}
		if err := r.opts.Store.PutMeta(ctx, "refused-behind", []byte(rev.Commit)); err != nil {
			return err
		}
		return r.notify(ctx, []fleet.Event{ev})
	})
	if err != nil {
		return err
	}
	r.log.Warn("commit behind the admitted one not admitted", "commit", rev.Commit, "admitted", r.commit)
	return nil
}

// eventKey identifies the rollout events that happen once per rollout (or
// per wave, or per failure) so that a step replayed after a crash or by a
// new leader records them once; other events get no key. The key is the
// event's identity, derived from (rollout, wave, kind): the stored event
// of a key is written once, whatever its message says the second time.
func eventKey(st rollout.State, e rollout.Event) string {
	// Not st.ID(), which is short enough to read but not unique.
	id := st.Key()
	if id == "" {
		return ""
	}
	typ := e.Type
	switch typ {
	case manifests.EventRolloutStarted, manifests.EventRolloutDone:
		return id + "|" + typ
	case manifests.EventWaveStarted:
		return fmt.Sprintf("%s|%s|%d", id, typ, e.Wave)
	case manifests.EventRolloutFailed, manifests.EventRolledBack:
		return fmt.Sprintf("%s|%s|%d", id, typ, len(st.Failed))
	}
	return ""
}

// admittedKey identifies the admission of one model by one release at one
// commit.
func admittedKey(release, commit, artifact string) string {
	return "admitted|" + release + "|" + commit + "|" + artifact
}

// deposed stops leading after a write was refused: the state is reloaded
// when this replica wins the lease again.
func (r *Reconciler) deposed(err error) {
	r.leaseMu.Lock()
	r.loadedTerm = 0
	r.leaseMu.Unlock()
	r.log.Warn("deposed: another replica holds the leader lease", "err", err)
}

// fenced reports whether err is a write refused because the lease passed on.
func fenced(err error) bool { return errors.Is(err, store.ErrFenced) }
