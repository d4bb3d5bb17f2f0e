package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// row is what the fleet list knows of one target, kept in memory and
// refreshed from the store's changes so that a page of 100,000 targets is
// filtered without reading them all.
type row struct {
	ID, Name string
	Kind     string // device or cluster
	Labels   map[string]string
	sel      map[string]string // selector labels
	Profiles []string
	Arch     string
	LastSeen time.Time
	Pending  bool // enrolled, or re-enrolled, and waiting for an admin
	Phase    string
	Running  map[string]string // release -> active digest
	Phases   map[string]string // release -> phase
	Desired  map[string]string // release -> desired digest
	Metrics  map[string]float64
	search   string // lower-cased name and label values, for the text filter
}

// admitted is a stored release's admitted snapshot.
type admitted = record.Admitted

// cache is the dashboard's copy of targets, desired states and releases.
type cache struct {
	st store.Store

	mu       sync.RWMutex
	rows     map[string]*row
	byName   []*row // sorted by name
	sorted   bool
	since    time.Time // newest updated_at read
	rev      int64     // newest desired revision read
	releases []store.Release
	recs     map[string]record.Release // decoded releases by name
	profiles []manifests.DeviceProfile
	version  int64 // bumped on every change
}

func newCache(st store.Store) *cache {
	return &cache{st: st, rows: map[string]*row{}, recs: map[string]record.Release{}}
}

// refresh reads what changed since the last call and reports whether
// anything did.
func (c *cache) refresh(ctx context.Context) (bool, error) {
	c.mu.RLock()
	since, rev := c.since, c.rev
	first := len(c.rows) == 0 && since.IsZero()
	c.mu.RUnlock()
	var ts []store.Target
	var err error
	if first {
		ts, err = c.st.Targets(ctx)
	} else {
		ts, err = c.st.TargetsUpdatedSince(ctx, since)
	}
	if err != nil {
		return false, fmt.Errorf("read targets: %w", err)
	}
	ds, err := c.st.DesiredSince(ctx, rev)
	if err != nil {
		return false, fmt.Errorf("read desired states: %w", err)
	}
	rels, err := c.st.Releases(ctx)
	if err != nil {
		return false, fmt.Errorf("read releases: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.applyReleases(rels)
	changed = c.applyTargets(ts) || changed
	changed = c.applyDesired(ds) || changed
	c.sortRows()
	if changed {
		c.version++
	}
	return changed, nil
}

// applyReleases decodes the releases when any changed, with the profiles
// they name, and matches every row against them again.
func (c *cache) applyReleases(rels []store.Release) bool {
	relsChanged := len(rels) != len(c.releases)
	for i := range rels {
		if !relsChanged && (rels[i].Name != c.releases[i].Name || !rels[i].UpdatedAt.Equal(c.releases[i].UpdatedAt)) {
			relsChanged = true
		}
	}
	if !relsChanged {
		return false
	}
	c.releases = rels
	c.recs = map[string]record.Release{}
	seen := map[string]bool{}
	c.profiles = nil
	for _, r := range rels {
		rec := record.Decode(record.Columns{Name: r.Name, Commit: r.Commit, Spec: r.Spec, State: r.State, Status: r.Status}, r.UpdatedAt)
		c.recs[r.Name] = rec
		if a := rec.Admitted; a != nil {
			for _, p := range a.Profiles {
				if !seen[p.Metadata.Name] {
					seen[p.Metadata.Name] = true
					c.profiles = append(c.profiles, p)
				}
			}
		}
	}
	sort.Slice(c.profiles, func(i, j int) bool { return c.profiles[i].Metadata.Name < c.profiles[j].Metadata.Name })
	for _, r := range c.rows {
		r.Profiles = c.match(r.sel)
	}
	return true
}

// applyTargets replaces the rows of the targets read.
func (c *cache) applyTargets(ts []store.Target) bool {
	changed := false
	for _, t := range ts {
		if t.UpdatedAt.After(c.since) {
			c.since = t.UpdatedAt
		}
		old := c.rows[t.ID]
		r := c.rowOf(t)
		if old != nil {
			if !old.LastSeen.Equal(r.LastSeen) || old.Phase != r.Phase || len(t.Labels) != len(old.Labels) || r.search != old.search {
				changed = true
			}
			r.Desired = old.Desired
		} else {
			c.sorted = false
			changed = true
		}
		c.rows[t.ID] = r
	}
	return changed
}

// applyDesired sets the desired digests of the rows whose desired state
// was written.
func (c *cache) applyDesired(ds []store.Desired) bool {
	changed := false
	for _, d := range ds {
		if d.Rev > c.rev {
			c.rev = d.Rev
		}
		r := c.rows[d.Target]
		if r == nil {
			continue
		}
		var st fleet.DesiredState
		if json.Unmarshal(d.Body, &st) != nil {
			continue
		}
		r.Desired = map[string]string{}
		for _, m := range st.Models {
			r.Desired[m.Release] = m.Digest
		}
		changed = true
	}
	return changed
}

// sortRows keeps byName sorted by name, with the rows' current pointers.
func (c *cache) sortRows() {
	if !c.sorted {
		c.byName = c.byName[:0]
		for _, r := range c.rows {
			c.byName = append(c.byName, r)
		}
		sort.Slice(c.byName, func(i, j int) bool { return c.byName[i].Name < c.byName[j].Name })
		c.sorted = true
		return
	}
	// Replace the pointers of updated rows in place.
	for i, r := range c.byName {
		if nr := c.rows[r.ID]; nr != r {
			c.byName[i] = nr
		}
	}
}

func (c *cache) rowOf(t store.Target) *row {
	r := &row{ID: t.ID, Name: t.Name, Kind: "device", Labels: t.Labels, Arch: t.Facts.Arch, LastSeen: t.LastSeen,
		Pending: t.State == store.StatePending || t.PendingHash != ""}
	if k := t.Labels["kind"]; k == "cluster" || t.Facts.Kind == fleet.KindCluster {
		r.Kind = "cluster"
	}
	ft := fleet.Target{Name: t.Name, Labels: t.Labels, Facts: t.Facts}
	r.sel = ft.SelectorLabels()
	r.Profiles = c.match(r.sel)
	var sb strings.Builder
	sb.WriteString(strings.ToLower(t.Name))
	for k, v := range t.Labels {
		sb.WriteString(" " + strings.ToLower(k) + "=" + strings.ToLower(v))
	}
	r.search = sb.String()
	if t.Status != nil {
		r.Phase = fleetstate.Phase(t.Status.Releases)
		r.Metrics = t.Status.Metrics
		r.Running, r.Phases = map[string]string{}, map[string]string{}
		for _, rs := range t.Status.Releases {
			r.Running[rs.Release] = rs.Digest
			r.Phases[rs.Release] = rs.Phase
		}
	}
	return r
}

func (c *cache) match(sel map[string]string) []string {
	var out []string
	for _, p := range c.profiles {
		if p.Spec.Selector.Matches(sel) {
			out = append(out, p.Metadata.Name)
		}
	}
	return out
}

// inSync reports whether the target runs every digest it is told to.
func (r *row) inSync() bool {
	for rel, d := range r.Desired {
		if r.Running[rel] != d || r.Phases[rel] != fleet.PhaseHealthy {
			return false
		}
	}
	return true
}

// Attention ranks, most urgent first.
const (
	rankFailed = iota
	rankOffline
	rankUpdating
	rankNever
	rankHealthy
	nRanks
)

func (r *row) rank(now time.Time, offlineAfter time.Duration) int {
	switch {
	case r.Phase == fleet.PhaseFailed || r.Phase == fleet.PhaseRolledBack:
		return rankFailed
	case r.LastSeen.IsZero():
		return rankNever
	case now.Sub(r.LastSeen) > offlineAfter:
		return rankOffline
	case !r.inSync() || (r.Phase != "" && r.Phase != fleet.PhaseHealthy):
		return rankUpdating
	}
	return rankHealthy
}

// Filter narrows the fleet list; the zero value matches every target.
type Filter struct {
	Text    string // substring of the name or a label
	Label   string // key=value, or key for any value
	Profile string
	Phase   string // a phase, or online, offline, updating, failed, never
}

// Counts is the fleet page's strip.
type Counts struct {
	Total, Online, Offline, Updating, Failed, Never, Pending int
}

// page returns the rows matching f, needs attention first then by name,
// from offset, at most limit, with the number matching and the whole
// fleet's counts.
func (c *cache) page(f Filter, offset, limit int, now time.Time, offlineAfter time.Duration) (rows []*row, matching int, counts Counts) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	text := strings.ToLower(strings.TrimSpace(f.Text))
	lk, lv, hasValue := strings.Cut(f.Label, "=")
	lk, lv = strings.TrimSpace(lk), strings.TrimSpace(lv)
	var buckets [nRanks][]*row
	need := offset + limit
	for _, r := range c.byName {
		rk := r.rank(now, offlineAfter)
		counts.Total++
		switch rk {
		case rankFailed:
			counts.Failed++
		case rankUpdating:
			counts.Updating++
		case rankNever:
			counts.Never++
		}
		if r.Pending {
			counts.Pending++
		}
		online := !r.LastSeen.IsZero() && now.Sub(r.LastSeen) <= offlineAfter
		if online {
			counts.Online++
		} else {
			counts.Offline++
		}
		if text != "" && !strings.Contains(r.search, text) {
			continue
		}
		if f.Label != "" {
			v, ok := r.sel[lk]
			if !ok || (hasValue && v != lv) {
				continue
			}
		}
		if f.Profile != "" && !slices.Contains(r.Profiles, f.Profile) {
			continue
		}
		if f.Phase != "" && !phaseMatches(f.Phase, r, rk, online) {
			continue
		}
		matching++
		if len(buckets[rk]) < need {
			buckets[rk] = append(buckets[rk], r)
		}
	}
	var all []*row
	for _, b := range buckets {
		all = append(all, b...)
		if len(all) >= need {
			break
		}
	}
	if offset >= len(all) {
		return nil, matching, counts
	}
	return all[offset:min(len(all), need)], matching, counts
}

func phaseMatches(want string, r *row, rank int, online bool) bool {
	switch want {
	case "online":
		return online
	case "offline":
		return !online
	case "failed":
		return rank == rankFailed
	case "updating":
		return rank == rankUpdating
	case "never":
		return rank == rankNever
	case "pending":
		return r.Pending
	}
	return strings.EqualFold(r.Phase, want)
}

// get returns the cached row of a target.
func (c *cache) get(id string) *row {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rows[id]
}

// record returns the decoded stored record of a release, and whether the
// cache holds it.
func (c *cache) record(name string) (record.Release, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.recs[name]
	return r, ok
}

func (c *cache) profileNames() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []string
	for _, p := range c.profiles {
		out = append(out, p.Metadata.Name)
	}
	return out
}
