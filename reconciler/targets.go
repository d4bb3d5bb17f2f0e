package reconciler

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

type cachedTarget struct {
	target   fleet.Target
	sel      map[string]string
	lastSeen time.Time
	status   *fleet.StatusReport
}

// targetCache is the fleet as the passes see it: every target read from the
// store, in name order, and what was last written and seen of each.
type targetCache struct {
	targets map[string]*cachedTarget
	order   []string
	synced  time.Time
	written map[string]string // target → etag stored
	online  map[string]bool
}

func newTargetCache() targetCache {
	return targetCache{targets: map[string]*cachedTarget{}, written: map[string]string{}, online: map[string]bool{}}
}

// syncTargets reads targets enrolled or reporting since the last sync.
func (r *Reconciler) syncTargets(ctx context.Context) error {
	c := &r.fleet
	since := c.synced.Add(-5 * time.Second) // overlap: writes commit out of order
	if c.synced.IsZero() {
		since = time.Time{}
	}
	now := time.Now()
	ts, err := r.opts.Store.TargetsUpdatedSince(ctx, since)
	if err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	added := false
	for _, t := range ts {
		if t.State != "" && t.State != store.StateAccepted {
			// Pending, rejected or deleted: not part of the fleet.
			if _, ok := c.targets[t.ID]; ok {
				delete(c.targets, t.ID)
				delete(c.online, t.ID)
				c.order = slices.DeleteFunc(c.order, func(id string) bool { return id == t.ID })
			}
			continue
		}
		ct := c.targets[t.ID]
		if ct == nil {
			ct = &cachedTarget{}
			c.targets[t.ID] = ct
			added = true
		}
		ct.target = fleet.Target{Name: t.ID, Labels: t.Labels, Facts: t.Facts}
		ct.sel = ct.target.SelectorLabels()
		ct.lastSeen = t.LastSeen
		ct.status = t.Status
	}
	if added {
		c.order = c.order[:0]
		for id := range c.targets {
			c.order = append(c.order, id)
		}
		slices.Sort(c.order)
	}
	c.synced = now
	return nil
}

// offline returns a TargetOffline event for targets that went quiet.
func (r *Reconciler) offline(now time.Time) []fleet.Event {
	c := &r.fleet
	var gone []string
	for _, id := range c.order {
		ct := c.targets[id]
		on := fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter)
		if was, ok := c.online[id]; ok && was && !on {
			gone = append(gone, id)
		}
		c.online[id] = on
	}
	if len(gone) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d targets offline (no contact for %s)", len(gone), r.opts.OfflineAfter)
	if len(gone) > 100 {
		gone = gone[:100]
	}
	return []fleet.Event{{Time: now, Type: manifests.EventTargetOffline, Message: msg, Targets: gone}}
}

func (r *Reconciler) phaseMetrics(now time.Time) {
	counts := map[string]int{}
	online := 0
	for _, ct := range r.fleet.targets {
		phase := "Unknown"
		if ct.status != nil {
			if p := fleetstate.Phase(ct.status.Releases); p != "" {
				phase = p
			}
		}
		counts[phase]++
		if fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter) {
			online++
		}
	}
	r.opts.Metrics.TargetsByPhase.Reset()
	for p, n := range counts {
		r.opts.Metrics.TargetsByPhase.WithLabelValues(p).Set(float64(n))
	}
	r.opts.Metrics.TargetsOnline.Set(float64(online))
}

func matchesAny(profiles []manifests.DeviceProfile, labels map[string]string) bool {
	for _, p := range profiles {
		if p.Spec.Selector.Matches(labels) {
			return true
		}
	}
	return false
}
