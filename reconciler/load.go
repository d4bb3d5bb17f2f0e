package reconciler

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Load restores the releases' records, the admitted commit, the source's
// conditions and the written desired states from the store, so a restart
// (or a new leader) carries on where the last pass stopped. A record that
// does not decode is kept as it is: its release is stalled and says why.
func (r *Reconciler) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(ctx)
}

func (r *Reconciler) loadLocked(ctx context.Context) error {
	recs, err := r.opts.Store.Records(ctx)
	if err != nil {
		return fmt.Errorf("load releases: %w", err)
	}
	clear(r.releases)
	clear(r.fleet.written)
	r.alerts = nil
	if b, err := r.opts.Store.Meta(ctx, "alerts"); err == nil {
		if err := json.Unmarshal(b, &r.alerts); err != nil {
			r.log.Warn("stored alerts do not decode; none until the next admission", "err", err)
		}
	}
	for _, rec := range recs {
		rs := r.release(rec.Name)
		rs.rec = rec
		rs.cond = FromWire(rec.Status.Conditions)
		rs.cond.Name = rec.Name
		rs.denied = rec.Status.Denied
		if rec.Err != nil {
			r.log.Error("release record does not decode: release stalled, record left as it is", "release", rec.Name, "err", rec.Err)
			continue
		}
		rs.stored = storedKey(rec)
		if rec.Admitted != nil {
			r.rememberTraining(rec.Admitted)
		}
	}
	if err := r.loadKept(ctx); err != nil {
		return err
	}
	if b, err := r.opts.Store.Meta(ctx, "admitted-commit"); err == nil {
		r.commit = string(b)
	}
	var cs []fleet.Condition
	if b, err := r.opts.Store.Meta(ctx, "source-conditions"); err == nil {
		if err := json.Unmarshal(b, &cs); err != nil {
			r.log.Warn("stored source conditions do not decode; starting without", "err", err)
			cs = nil
		}
	}
	r.src.restore(r.commit, cs)
	if err := r.loadWritten(ctx); err != nil {
		return fmt.Errorf("load desired states: %w", err)
	}
	r.reload = false
	r.publishRolloutIDs()
	return nil
}

// loadWritten fills fleet.written with the stored desired states' tags,
// reading one state at a time when the store can.
func (r *Reconciler) loadWritten(ctx context.Context) error {
	note := func(d store.Desired) error {
		r.fleet.written[d.Target] = d.ETag
		return nil
	}
	if st, ok := r.opts.Store.(interface {
		EachDesiredSince(context.Context, int64, func(store.Desired) error) error
	}); ok {
		return st.EachDesiredSince(ctx, 0, note)
	}
	ds, err := r.opts.Store.DesiredSince(ctx, 0)
	for _, d := range ds {
		note(d)
	}
	return err
}

// storedKey identifies what a record stores, to skip unchanged writes.
func storedKey(rec record.Release) string {
	c, err := record.Encode(rec)
	if err != nil {
		return ""
	}
	return string(c.Spec) + "\x00" + string(c.State) + "\x00" + string(c.Status)
}
