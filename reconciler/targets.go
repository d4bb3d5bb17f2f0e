package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

type cachedTarget struct {
	// labels and facts are shared with every target that has equal ones
	// (labelSets, factSets): a fleet has few distinct sets, and a copy of
	// fleet.Facts costs about 250 bytes a target.
	labels   map[string]string
	facts    *fleet.Facts
	sel      map[string]string
	lastSeen time.Time
	status   *fleet.StatusReport // compacted (compactStatus)
	updated  int64               // UnixNano of the store's updated_at this entry reflects
	online   bool                // at the last pass (offline)
}

// target is ct as the fleet.Target named id (its own copy of the facts).
func (ct *cachedTarget) target(id string) fleet.Target {
	t := fleet.Target{Name: id, Labels: ct.labels}
	if ct.facts != nil {
		t.Facts = *ct.facts
	}
	return t
}

// targetCache is the fleet as the passes see it: every target read from the
// store, in name order, and what was last written and seen of each.
type targetCache struct {
	targets map[string]*cachedTarget
	order   []string
	synced  time.Time
	// admitted is when an admission last read the store (admitBegin):
	// the pass it runs then reads only the inbox (freshSync).
	admitted time.Time
	written  map[string]string // target → etag stored
	labels   labelSets         // shared label and selector maps
	facts    factSets          // shared facts
	// gen counts the changes admission reads: a target joining or leaving,
	// or changing its labels or the facts plan reads (admissionChanged).
	gen uint64
}

func newTargetCache() targetCache {
	return targetCache{targets: map[string]*cachedTarget{}, written: map[string]string{}, labels: labelSets{}, facts: factSets{}}
}

// labelSets shares identical label maps between targets: a fleet has few
// distinct label sets, and a map costs far more than its pointer. A shared
// map is never written (targets' labels and selector labels are only read).
type labelSets map[string]map[string]string

// intern returns the shared map equal to m, making m the shared one when
// there is none yet. The set starts over when it holds many more sets than
// there are targets (sets no target uses any more).
func (ls *labelSets) intern(m map[string]string, targets int) map[string]string {
	if len(m) == 0 {
		return m
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	key := b.String()
	if s, ok := (*ls)[key]; ok {
		return s
	}
	if len(*ls) > 2*targets+1024 {
		*ls = labelSets{}
	}
	(*ls)[key] = m
	return m
}

// factSets shares identical facts between targets, as labelSets shares
// label maps; shared facts are never written.
type factSets map[string]*fleet.Facts

// intern returns the shared facts equal to f (f itself when there are
// none yet); it starts over as labelSets.intern does.
func (fs *factSets) intern(f fleet.Facts, targets int) *fleet.Facts {
	b, err := json.Marshal(f)
	if err != nil {
		return &f
	}
	if s, ok := (*fs)[string(b)]; ok {
		return s
	}
	if len(*fs) > 2*targets+1024 {
		*fs = factSets{}
	}
	(*fs)[string(b)] = &f
	return &f
}

// setTarget sets ct's labels and facts to t's, shared (labelSets,
// factSets), and its selector labels.
func (c *targetCache) setTarget(ct *cachedTarget, t fleet.Target) {
	t.Labels = c.labels.intern(t.Labels, len(c.targets))
	sel := c.labels.intern(t.SelectorLabels(), len(c.targets))
	if ct.sel == nil || admissionChanged(ct, t, sel) {
		c.gen++
	}
	ct.labels, ct.facts, ct.sel = t.Labels, c.facts.intern(t.Facts, len(c.targets)), sel
}

// compactStatus returns rep as the fleet cache keeps it: without the facts
// (they are the target's, see setTarget) and the deployment log, and with
// the release names, phases and digests of its releases canonical
// (unique.Make), so that a fleet reporting the same model holds one copy of
// each string instead of one a target; so are the names of its metrics.
func compactStatus(rep fleet.StatusReport) *fleet.StatusReport {
	rep.Facts, rep.Log = nil, nil
	if len(rep.Releases) > 0 {
		rs := slices.Clone(rep.Releases)
		for i := range rs {
			s := &rs[i]
			s.Release, s.Phase = canonical(s.Release), canonical(s.Phase)
			s.Digest, s.Desired, s.Previous = canonical(s.Digest), canonical(s.Desired), canonical(s.Previous)
		}
		rep.Releases = rs
	}
	if len(rep.Metrics) > 0 {
		// The decoder gave every report its own copy of each name.
		m := make(map[string]float64, len(rep.Metrics))
		for k, v := range rep.Metrics {
			m[canonical(k)] = v
		}
		rep.Metrics = m
	}
	return &rep
}

// canonical is the one copy of s (unique.Make); "" stays "".
func canonical(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// observed is a status report this replica stored, waiting for the next
// pass (see Observe): compacted as the fleet cache keeps it (a settled
// fleet takes no pass for its reports, so the inbox can hold one of every
// target's), with the facts it carried.
type observed struct {
	rep   *fleet.StatusReport // compactStatus
	facts *fleet.Facts
	at    time.Time
}

// inbox holds the reports stored since the last pass, by target; it has its
// own lock so that a report never waits for a pass.
type inbox struct {
	mu      sync.Mutex
	reports map[string]observed
	filter  reportFilter // which reports trigger a pass
}

// Observe hands the reconciler a status report the fleet API has just
// committed, received at at: the next pass sees it without reading the
// store. Reports stored by another replica are read from the store. Safe to
// call from any goroutine; it does not block on a pass.
func (r *Reconciler) Observe(id string, rep fleet.StatusReport, at time.Time) {
	rep.Log = nil // the deployment log is not part of the fleet's view
	key, sig := r.inbox.filter.sign(id, rep, at)
	o := observed{rep: compactStatus(rep), facts: rep.Facts, at: at}
	r.inbox.mu.Lock()
	if r.inbox.reports == nil {
		r.inbox.reports = map[string]observed{}
	}
	if had, ok := r.inbox.reports[id]; !ok || !at.Before(had.at) {
		r.inbox.reports[id] = o
	}
	prev, seen := r.inbox.filter.swap(key, sig, r.fleetSize.Load())
	r.inbox.mu.Unlock()
	if r.reportMatters(sig, prev, seen) {
		r.Trigger()
	}
}

func (r *Reconciler) takeInbox() map[string]observed {
	r.inbox.mu.Lock()
	defer r.inbox.mu.Unlock()
	m := r.inbox.reports
	r.inbox.reports = nil
	return m
}

// syncTargets brings the fleet up to date: first the reports handed over
// by Observe, then the targets the store changed since the last sync that
// the cache does not reflect yet (enrollments, changes of state, reports
// stored by another replica), read by their stamps first so that a report
// already observed is not read and decoded again.
func (r *Reconciler) syncTargets(ctx context.Context) error {
	c := &r.fleet
	since := c.synced.Add(-5 * time.Second) // overlap: writes commit out of order
	if c.synced.IsZero() {
		since = time.Time{}
	}
	now := time.Now()
	r.applyInbox()
	stale, err := r.staleTargets(ctx, since)
	if err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	ts, err := r.opts.Store.TargetsByID(ctx, stale)
	if err != nil {
		return fmt.Errorf("read targets: %w", err)
	}
	added := false
	for _, t := range ts {
		if t.State != "" && t.State != store.StateAccepted {
			// Pending, rejected or deleted: not part of the fleet.
			if _, ok := c.targets[t.ID]; ok {
				delete(c.targets, t.ID)
				c.gen++
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
		c.setTarget(ct, fleet.Target{Name: t.ID, Labels: t.Labels, Facts: t.Facts})
		ct.lastSeen = t.LastSeen
		ct.status = nil
		if t.Status != nil {
			ct.status = compactStatus(*t.Status)
		}
		ct.updated = t.UpdatedAt.UnixNano()
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

// freshSync is the read-targets step of a pass: syncTargets, or only the
// inbox when the admission this pass follows read the store less than a
// second ago. Its read covered the same stamps (the 5 s overlap), a
// fleet's after a burst of reports; what the store changed since reaches
// the next pass.
func (r *Reconciler) freshSync(ctx context.Context) error {
	at := r.fleet.admitted
	r.fleet.admitted = time.Time{}
	if r.staged != nil && !at.IsZero() && time.Since(at) < time.Second {
		r.applyInbox()
		return nil
	}
	return r.syncTargets(ctx)
}

// applyInbox brings the reports handed over by Observe into the fleet.
func (r *Reconciler) applyInbox() {
	c := &r.fleet
	for id, o := range r.takeInbox() {
		ct := c.targets[id]
		if ct == nil || o.at.UnixNano() <= ct.updated {
			continue // not in the fleet (yet: the store read adds it), or older
		}
		if f := o.facts; f != nil {
			t := ct.target(id)
			t.Facts = *f
			c.setTarget(ct, t)
		}
		ct.status, ct.lastSeen, ct.updated = o.rep, o.at, o.at.UnixNano()
	}
}

// stampStreamer is a store that reads target stamps one at a time
// (store.SQL).
type stampStreamer interface {
	EachTargetStampSince(ctx context.Context, since time.Time, fn func(id, state []byte, updatedAt int64) error) error
}

// staleTargets returns the targets the store changed since since that the
// fleet cache does not reflect: new ones, ones leaving the fleet and ones
// updated after the cache's copy.
func (r *Reconciler) staleTargets(ctx context.Context, since time.Time) ([]string, error) {
	c := &r.fleet
	var stale []string
	if st, ok := r.opts.Store.(stampStreamer); ok {
		// After a burst of reports a fleet's stamps come back, nearly all
		// of reports the inbox already brought: compared as read, only
		// the stale ones take a string.
		err := st.EachTargetStampSince(ctx, since, func(id, state []byte, at int64) error {
			ct := c.targets[string(id)]
			leaving := ct != nil && len(state) > 0 && string(state) != store.StateAccepted
			if ct == nil || leaving || (at != 0 && at > ct.updated) {
				stale = append(stale, string(id))
			}
			return nil
		})
		return stale, err
	}
	stamps, err := r.opts.Store.TargetStampsSince(ctx, since)
	if err != nil {
		return nil, err
	}
	for _, st := range stamps {
		ct := c.targets[st.ID]
		leaving := ct != nil && st.State != "" && st.State != store.StateAccepted
		if ct == nil || leaving || st.UpdatedAt.UnixNano() > ct.updated {
			stale = append(stale, st.ID)
		}
	}
	return stale, nil
}

// offline returns a TargetOffline event for targets that went quiet.
func (r *Reconciler) offline(now time.Time) []fleet.Event {
	c := &r.fleet
	var gone []string
	for _, id := range c.order {
		ct := c.targets[id]
		on := fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter)
		if ct.online && !on {
			gone = append(gone, id)
		}
		ct.online = on
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
