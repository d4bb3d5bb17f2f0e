package reconciler

import (
	"context"
	"time"
)

// Run reconciles every Interval, on triggers and when a rollout asks to be
// requeued, while this replica holds the leader lease, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	go r.campaign(ctx)
	last := time.Time{}
	for {
		r.mu.Lock()
		wait := r.opts.Interval
		if r.requeue > 0 && r.requeue < wait {
			wait = r.requeue
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.trigger:
			// Under a steady stream of status reports, passes take at most
			// a third of the time: the gap grows with the pass duration.
			minGap := max(r.opts.MinGap, 2*r.lastPass)
			if gap := minGap - time.Since(last); gap > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(gap):
				}
			}
		case <-t.C:
		}
		t.Stop()
		r.leaseMu.Lock()
		l, loaded := r.lease, r.loadedTerm
		r.leaseMu.Unlock()
		if !l.Valid() {
			if loaded != 0 {
				r.leaseMu.Lock()
				r.loadedTerm = 0
				r.leaseMu.Unlock()
				r.log.Info("following: the leader lease is not held", "term", l.Term)
			}
			r.followRollouts(ctx)
			continue
		}
		if loaded != l.Term {
			// Newly elected: another replica may have moved the state on.
			if err := r.elected(ctx, l.Term); err != nil {
				r.log.Error("take over as leader", "err", err)
				continue
			}
		}
		lctx, ok := r.leadCtx(ctx)
		if !ok {
			continue
		}
		if !r.admitDue(lctx) {
			continue
		}
		passStart := time.Now()
		if err := r.Reconcile(lctx); fenced(err) {
			r.deposed(err)
		} else if err != nil && ctx.Err() == nil {
			r.log.Error("reconcile", "err", err)
		}
		last = time.Now()
		r.lastPass = last.Sub(passStart)
	}
}

// admitDue admits the commit fetched since the last pass, else the
// admitted commit again when readmitDue says so. It returns false when
// this replica was deposed meanwhile.
func (r *Reconciler) admitDue(ctx context.Context) bool {
	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	if pending != nil {
		if err := r.Admit(ctx, *pending); fenced(err) {
			r.mu.Lock()
			if r.pending == nil {
				r.pending = pending // for when this replica leads again
			}
			r.mu.Unlock()
			r.deposed(err)
			return false
		} else if err != nil {
			r.log.Error("admit commit", "commit", pending.Commit, "err", err)
		}
	} else if rev := r.readmitDue(); rev != nil {
		// A denial may lift with time (promotion gates) and a held release
		// with a push or a registry back up: evaluate the admitted commit
		// again, at most once an interval (sooner when a registry was down).
		if err := r.Admit(ctx, *rev); err != nil {
			r.log.Error("re-admit commit", "commit", rev.Commit, "err", err)
		}
	}
	return true
}
