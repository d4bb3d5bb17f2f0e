package lineage

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// memIndex is the in-memory picture of lineage_edges that walks, At and
// Where read instead of the tables once it is loaded: per node the folded
// links in both directions, per (target, release) its deployment events in
// time order, and per derived node its provenance edges. It is rebuilt from
// the database at start (in the background; queries use SQL until then) and
// kept up to date by reading, at the start of every query, the edges whose
// id is above the highest one it has, so edges written by another replica or
// inside another package's transaction are seen as well.
//
// Its cost is about 100 bytes an edge (bench/lineage prints it).
type memIndex struct {
	mu        sync.RWMutex
	watermark int64               // highest edge id loaded
	gaps      map[int64]time.Time // ids under the watermark not seen yet (PostgreSQL commits out of id order), with when they were noticed
	folds     []fold
	adj       map[int64]*nodeAdj
	deploys   map[tgtRel][]deployEvent
	rels      []string
	relIDs    map[string]uint32
	tgtRels   map[int64][]uint32
	prov      map[int64][]provEdge // non-deployedTo edges by their downstream node
	strs      []string             // interned attrs and commit strings; 0 is ""
	strIDs    map[string]uint32
	kinds     []string // interned edge types and outcomes; 0 is ""
	kindIDs   map[string]uint8
	edges     int
	// The live deployment index: per (target, release) the model active
	// after its latest deployment event, and per model those (target,
	// release) pairs; lastAt is the time of the latest deployment event.
	// Where at a time at or after lastAt (now) reads it instead of every
	// target a model was ever deployed to.
	liveOf map[tgtRel]int64
	live   map[int64]map[tgtRel]struct{}
	lastAt int64
}

// fold is every recorded edge of one type between two nodes, as a Link.
type fold struct {
	up, down         int64
	first, last, lid int64 // lid: id of the edge that set last
	count            uint32
	kind, outcome    uint8
}

type nodeAdj struct {
	down, up []int32          // folds where the node is up (its downstream links) and down
	byDown   map[uint64]int32 // (other, kind) → fold, for nodes with many downstream links
}

type tgtRel struct {
	target int64
	rel    uint32
}

type deployEvent struct {
	model, at, id int64
	attrs         uint32
	end           bool
	outcome       uint8
}

type provEdge struct {
	up, at, id int64
	commit     uint32 // declaredIn: the commit of its attributes
	kind       uint8
}

// maxGapAge is how long an id skipped over is waited for: a PostgreSQL
// transaction that took a sequence value commits within it, or rolled back
// (or lost an ON CONFLICT race) and never will.
const maxGapAge = time.Minute

// maxGaps bounds the ids waited for; the oldest are dropped first.
const maxGaps = 4096

func newMemIndex() *memIndex {
	return &memIndex{
		gaps: map[int64]time.Time{}, adj: map[int64]*nodeAdj{}, deploys: map[tgtRel][]deployEvent{},
		relIDs: map[string]uint32{"": 0}, rels: []string{""}, tgtRels: map[int64][]uint32{},
		prov: map[int64][]provEdge{}, strs: []string{""}, strIDs: map[string]uint32{"": 0},
		kinds: []string{""}, kindIDs: map[string]uint8{"": 0},
		liveOf: map[tgtRel]int64{}, live: map[int64]map[tgtRel]struct{}{},
	}
}

// loadIndex builds the index from the database in the background and
// installs it when done; until then (or when it fails) queries use SQL.
func (g *Graph) loadIndex(ctx context.Context) {
	ix := newMemIndex()
	err := g.read(ctx, func(r *reader) error {
		if err := ix.refresh(ctx, r.tx, g.db.Rebind, g.now()); err != nil {
			return err
		}
		return g.warmNames(ctx, r.tx)
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.index = ix
	}
	close(g.indexReady)
}

// warmNames fills the node id cache with every node (up to maxCachedIDs),
// so that walks over the index name their nodes without a query; nodes
// recorded later are cached as they are written or first read.
func (g *Graph) warmNames(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, name FROM lineage_nodes ORDER BY id LIMIT `+fmt.Sprint(maxCachedIDs/2))
	if err != nil {
		return fmt.Errorf("lineage index: node names: %w", err)
	}
	defer rows.Close()
	ids := map[string]int64{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return fmt.Errorf("lineage index: node names: %w", err)
		}
		ids[name] = id
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lineage index: node names: %w", err)
	}
	g.cache(ids)
	return nil
}

// WaitIndex waits until the in-memory index is loaded (or failed to load,
// leaving SQL to answer) and reports whether it is in use.
func (g *Graph) WaitIndex(ctx context.Context) bool {
	if g.indexReady == nil {
		return false
	}
	select {
	case <-g.indexReady:
	case <-ctx.Done():
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.index != nil
}

// memory returns the loaded index brought up to date with what r's
// transaction sees, or nil when queries must use SQL.
func (r *reader) memory(ctx context.Context) *memIndex {
	if r.mem != nil || r.noMem {
		return r.mem
	}
	r.Graph.mu.Lock()
	ix := r.Graph.index
	r.Graph.mu.Unlock()
	if ix == nil {
		r.noMem = true
		return nil
	}
	if err := ix.refresh(ctx, r.tx, r.db.Rebind, r.now()); err != nil {
		r.noMem = true // answer from SQL this time
		return nil
	}
	r.mem = ix
	return ix
}

// refresh loads the edges above the watermark and those under it that were
// skipped before (see gaps).
func (ix *memIndex) refresh(ctx context.Context, tx *sql.Tx, rebind func(string) string, now time.Time) error {
	var max sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM lineage_edges`).Scan(&max); err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	ix.mu.RLock()
	upToDate := max.Int64 <= ix.watermark && len(ix.gaps) == 0
	ix.mu.RUnlock()
	if upToDate {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if len(ix.gaps) > 0 {
		ids := make([]any, 0, len(ix.gaps))
		for id, seen := range ix.gaps {
			if now.Sub(seen) > maxGapAge {
				delete(ix.gaps, id)
				continue
			}
			ids = append(ids, id)
		}
		for len(ids) > 0 {
			n := min(len(ids), 500)
			q := `SELECT id, kind, up, down, at, phase, outcome, rel, attrs FROM lineage_edges WHERE id IN (?` + strings.Repeat(", ?", n-1) + `)`
			if err := ix.scan(ctx, tx, rebind(q), ids[:n], now, false); err != nil {
				return err
			}
			ids = ids[n:]
		}
	}
	if max.Int64 > ix.watermark {
		q := rebind(`SELECT id, kind, up, down, at, phase, outcome, rel, attrs FROM lineage_edges WHERE id > ? ORDER BY id`)
		if err := ix.scan(ctx, tx, q, []any{ix.watermark}, now, true); err != nil {
			return err
		}
	}
	return nil
}

func (ix *memIndex) scan(ctx context.Context, tx *sql.Tx, q string, args []any, now time.Time, tail bool) error {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, up, down, at int64
		var kind, phase, outcome, rel, attrs string
		if err := rows.Scan(&id, &kind, &up, &down, &at, &phase, &outcome, &rel, &attrs); err != nil {
			return fmt.Errorf("lineage index: %w", err)
		}
		if tail {
			for gap := ix.watermark + 1; gap < id && ix.watermark > 0; gap++ {
				ix.addGap(gap, now)
			}
			if id > ix.watermark {
				ix.watermark = id
			}
		} else {
			delete(ix.gaps, id)
		}
		ix.add(id, kind, up, down, at, phase, outcome, rel, attrs)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	return nil
}

func (ix *memIndex) addGap(id int64, now time.Time) {
	if len(ix.gaps) >= maxGaps {
		oldest, at := int64(0), now
		for g, t := range ix.gaps {
			if t.Before(at) || (t.Equal(at) && (oldest == 0 || g < oldest)) {
				oldest, at = g, t
			}
		}
		delete(ix.gaps, oldest)
	}
	ix.gaps[id] = now
}

func (ix *memIndex) kindID(s string) uint8 {
	if id, ok := ix.kindIDs[s]; ok {
		return id
	}
	if len(ix.kinds) >= 255 {
		return 0
	}
	ix.kinds = append(ix.kinds, s)
	id := uint8(len(ix.kinds) - 1)
	ix.kindIDs[s] = id
	return id
}

func (ix *memIndex) strID(s string) uint32 {
	if id, ok := ix.strIDs[s]; ok {
		return id
	}
	ix.strs = append(ix.strs, s)
	id := uint32(len(ix.strs) - 1)
	ix.strIDs[s] = id
	return id
}

func (ix *memIndex) relID(s string) uint32 {
	if id, ok := ix.relIDs[s]; ok {
		return id
	}
	ix.rels = append(ix.rels, s)
	id := uint32(len(ix.rels) - 1)
	ix.relIDs[s] = id
	return id
}

func (ix *memIndex) node(id int64) *nodeAdj {
	n := ix.adj[id]
	if n == nil {
		n = &nodeAdj{}
		ix.adj[id] = n
	}
	return n
}

// byDownThreshold is the number of downstream links above which a node
// keeps a map to find the link of a new edge.
const byDownThreshold = 16

func (ix *memIndex) add(id int64, kind string, up, down, at int64, phase, outcome, rel, attrs string) {
	ix.edges++
	k, o := ix.kindID(kind), ix.kindID(outcome)
	un := ix.node(up)
	key := uint64(down)<<8 | uint64(k)
	fi := int32(-1)
	if un.byDown != nil {
		if f, ok := un.byDown[key]; ok {
			fi = f
		}
	} else {
		for _, f := range un.down {
			if ix.folds[f].down == down && ix.folds[f].kind == k {
				fi = f
				break
			}
		}
	}
	if fi >= 0 {
		f := &ix.folds[fi]
		f.count++
		f.first = min(f.first, at)
		if at > f.last || (at == f.last && id > f.lid) {
			f.last, f.lid, f.outcome = at, id, o
		}
	} else {
		ix.folds = append(ix.folds, fold{up: up, down: down, first: at, last: at, lid: id, count: 1, kind: k, outcome: o})
		fi = int32(len(ix.folds) - 1)
		un.down = append(un.down, fi)
		if un.byDown != nil {
			un.byDown[key] = fi
		} else if len(un.down) > byDownThreshold {
			un.byDown = make(map[uint64]int32, 2*len(un.down))
			for _, f := range un.down {
				un.byDown[uint64(ix.folds[f].down)<<8|uint64(ix.folds[f].kind)] = f
			}
		}
		dn := ix.node(down)
		dn.up = append(dn.up, fi)
	}
	if kind == EdgeDeployedTo {
		r := ix.relID(rel)
		tr := tgtRel{down, r}
		evs := ix.deploys[tr]
		if len(evs) == 0 {
			ix.tgtRels[down] = append(ix.tgtRels[down], r)
		}
		ev := deployEvent{model: up, at: at, id: id, attrs: ix.strID(attrs), end: phase == PhaseEnd, outcome: o}
		i := len(evs)
		for i > 0 && (evs[i-1].at > at || (evs[i-1].at == at && evs[i-1].id > id)) {
			i--
		}
		evs = append(evs, deployEvent{})
		copy(evs[i+1:], evs[i:])
		evs[i] = ev
		ix.deploys[tr] = evs
		ix.lastAt = max(ix.lastAt, at)
		ix.setLive(tr, evs)
		return
	}
	commit := uint32(0)
	if kind == EdgeDeclaredIn && attrs != "" {
		var v struct {
			Commit string `json:"commit"`
		}
		if json.Unmarshal([]byte(attrs), &v) == nil {
			commit = ix.strID(v.Commit)
		}
	}
	ix.prov[down] = append(ix.prov[down], provEdge{up: up, at: at, id: id, commit: commit, kind: k})
}

// walk is walkFrom over the index: the same nodes, depths and links.
func (ix *memIndex) walk(rootID int64, depth int, upstream bool, sg *Subgraph) (reached []int64, depthOf map[int64]int, order []int32) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	depthOf = make(map[int64]int, 64)
	depthOf[rootID] = 0
	reached = []int64{rootID}
	frontier := []int64{rootID}
	for d := 1; d <= depth && len(frontier) > 0 && !sg.Truncated; d++ {
		var next []int64
		for _, n := range frontier {
			a := ix.adj[n]
			if a == nil {
				continue
			}
			list := a.down
			if upstream {
				list = a.up
			}
			for _, fi := range list {
				f := &ix.folds[fi]
				other := f.down
				if upstream {
					other = f.up
				}
				if _, ok := depthOf[other]; !ok {
					if len(depthOf) >= MaxNodes {
						sg.Truncated = true
						continue
					}
					depthOf[other] = d
					reached = append(reached, other)
					next = append(next, other)
				}
				order = append(order, fi)
			}
		}
		frontier = next
	}
	return reached, depthOf, order
}

// links returns folds as Links of the given node names, in order.
func (ix *memIndex) links(folds []int32, names map[int64]string) []Link {
	out := make([]Link, 0, len(folds))
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for _, fi := range folds {
		f := &ix.folds[fi]
		typ := ix.kinds[f.kind]
		from, to := fromUpDown(typ, names[f.up], names[f.down])
		l := Link{Type: typ, From: from, To: to, First: time.UnixMicro(f.first).UTC(), Last: time.UnixMicro(f.last).UTC(), Count: int(f.count)}
		if typ == EdgeDeployedTo {
			l.Outcome = ix.kinds[f.outcome]
		}
		out = append(out, l)
	}
	return out
}

// targetReleases lists the releases ever deployed to target, sorted.
func (ix *memIndex) targetReleases(target int64) []string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]string, 0, len(ix.tgtRels[target]))
	for _, r := range ix.tgtRels[target] {
		out = append(out, ix.rels[r])
	}
	sort.Strings(out)
	return out
}

// activeOn is reader.activeOn over the index.
func (ix *memIndex) activeOn(target int64, rel string, at int64) *deployment {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	r, ok := ix.relIDs[rel]
	if !ok {
		return nil
	}
	return ix.activeIn(ix.deploys[tgtRel{target, r}], at)
}

// activeIn is the deployment of evs (one target and release, in time order)
// active at at, nil when none.
func (ix *memIndex) activeIn(evs []deployEvent, at int64) *deployment {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].at > at }) - 1
	var ended map[int64]bool
	var decided map[[2]int64]bool
	for ; i >= 0; i-- {
		ev := &evs[i]
		if ev.end {
			if ended == nil {
				ended = map[int64]bool{}
			}
			ended[ev.model] = true
			continue
		}
		key := [2]int64{ev.model, ev.at}
		if decided[key] {
			continue
		}
		if decided == nil {
			decided = map[[2]int64]bool{}
		}
		decided[key] = true
		outcome := ix.kinds[ev.outcome]
		if outcome == OutcomeRemoved {
			return nil
		}
		if outcome == OutcomeFailed || ended[ev.model] {
			continue
		}
		return &deployment{model: ev.model, at: ev.at, outcome: outcome, attrs: ix.strs[ev.attrs]}
	}
	return nil
}

// setLive records the model active on tr after its latest event.
func (ix *memIndex) setLive(tr tgtRel, evs []deployEvent) {
	if old, ok := ix.liveOf[tr]; ok {
		delete(ix.liveOf, tr)
		if set := ix.live[old]; set != nil {
			delete(set, tr)
			if len(set) == 0 {
				delete(ix.live, old)
			}
		}
	}
	d := ix.activeIn(evs, math.MaxInt64)
	if d == nil {
		return
	}
	ix.liveOf[tr] = d.model
	set := ix.live[d.model]
	if set == nil {
		set = map[tgtRel]struct{}{}
		ix.live[d.model] = set
	}
	set[tr] = struct{}{}
}

// liveTargets returns the (target, release) pairs running model after the
// latest deployment event, and false when at is before that event (a
// question about the past, which the live index cannot answer).
func (ix *memIndex) liveTargets(model, at int64) ([]tgtRel, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if at < ix.lastAt {
		return nil, false
	}
	out := make([]tgtRel, 0, len(ix.live[model]))
	for tr := range ix.live[model] {
		out = append(out, tr)
	}
	return out, true
}

func (ix *memIndex) relName(r uint32) string {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.rels[r]
}

// derived returns the nodes one trainedOn or packagedFrom edge downstream
// of n recorded at or before at.
func (ix *memIndex) derived(n, at int64) []int64 {
	return ix.downstreamOf(n, at, EdgeTrainedOn, EdgePackagedFrom)
}

// deployedTargets returns the targets model was deployed to at or before at.
func (ix *memIndex) deployedTargets(model, at int64) []int64 {
	return ix.downstreamOf(model, at, EdgeDeployedTo, EdgeDeployedTo)
}

// downstreamOf returns the nodes one edge of kind a or b downstream of n
// whose first edge was recorded at or before at.
func (ix *memIndex) downstreamOf(n, at int64, a, b string) []int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	adj := ix.adj[n]
	if adj == nil {
		return nil
	}
	var out []int64
	for _, fi := range adj.down {
		f := &ix.folds[fi]
		if k := ix.kinds[f.kind]; (k == a || k == b) && f.first <= at {
			out = append(out, f.down)
		}
	}
	return out
}

// provenance returns, as of at, the commit of the latest declaredIn edge
// from model to release node rid (0 for none), the commit the model was
// packaged from (0 for none) and the datasets it was trained on.
func (ix *memIndex) provenance(model, rid, at int64) (commit string, source int64, datasets []int64) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var best *provEdge
	seen := map[int64]bool{}
	for i := range ix.prov[model] {
		p := &ix.prov[model][i]
		if p.at > at {
			continue
		}
		switch ix.kinds[p.kind] {
		case EdgeDeclaredIn:
			if rid != 0 && p.up == rid && (best == nil || p.at > best.at || (p.at == best.at && p.id > best.id)) {
				best = p
			}
		case EdgePackagedFrom:
			source = p.up
		case EdgeTrainedOn:
			if !seen[p.up] {
				seen[p.up] = true
				datasets = append(datasets, p.up)
			}
		}
	}
	if best != nil {
		commit = ix.strs[best.commit]
	}
	return commit, source, datasets
}

// IndexStats describes the in-memory index: edges loaded and an estimate of
// the bytes it holds.
type IndexStats struct {
	Loaded bool
	Edges  int
	Bytes  int64
}

// IndexStats reports on the in-memory index.
func (g *Graph) IndexStats() IndexStats {
	g.mu.Lock()
	ix := g.index
	g.mu.Unlock()
	if ix == nil {
		return IndexStats{}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	b := int64(cap(ix.folds))*48 + int64(len(ix.adj))*(48+8+8)
	for _, a := range ix.adj {
		b += int64(cap(a.down)+cap(a.up)) * 4
		b += int64(len(a.byDown)) * 24
	}
	for _, evs := range ix.deploys {
		b += int64(cap(evs))*40 + 64
	}
	for _, p := range ix.prov {
		b += int64(cap(p))*40 + 48
	}
	for _, s := range ix.strs {
		b += int64(len(s)) + 40
	}
	return IndexStats{Loaded: true, Edges: ix.edges, Bytes: b}
}
