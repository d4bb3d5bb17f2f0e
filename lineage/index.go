package lineage

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// memIndex is the in-memory picture of lineage_edges that walks, At and
// Where read instead of the tables once it is loaded: per node its name and
// the folded links in both directions, per (target, release) its deployment
// events in time order, per model the spans of time it was the active
// deployment of each (target, release), and per derived node its provenance
// edges. It is rebuilt from the database at start (in the background;
// queries use SQL until then) and kept up to date by reading the edges
// whose id is above the highest one it has, so edges written by another
// replica or inside another package's transaction are seen as well: before
// a query after an edge was committed through a Graph on the same
// *sqldb.DB, and otherwise when its last check against the database is
// older than the staleness bound (see reader.memory and Graph.current).
//
// Nodes are numbered densely in the index (nodes, nodeIdx) so that walks
// step from link to node without a map lookup and name each node from the
// slice, never from the database or a map.
//
// On bench/lineage's graph of a million edges it costs about 150 bytes an
// edge by IndexStats' estimate, and the heap grows by about 170 bytes an
// edge with the node name cache warmed at load (the bench prints both).
type memIndex struct {
	mu        sync.RWMutex
	watermark int64               // highest edge id loaded
	gaps      map[int64]time.Time // ids under the watermark not seen yet (PostgreSQL commits out of id order), with when they were noticed
	folds     []fold
	nodes     []nodeRec       // by index; 0 is unused
	nodeIdx   map[int64]int32 // node id → index in nodes
	unnamed   []int32         // nodes whose name refresh has not loaded yet
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
	// spans holds, per model, when it was the active deployment of each
	// (target, release): Where at any time reads the spans of the models it
	// found, so its cost follows the answer rather than every target a
	// model was ever deployed to. touched holds, while a refresh adds
	// edges, the spans each (target, release) given new events had before
	// them; settle replaces them at the end of the refresh.
	spans   map[int64]*modelSpans
	touched map[tgtRel][]span
}

// fold is every recorded edge of one type between two nodes, as a Link.
type fold struct {
	first, last, lid int64 // lid: id of the edge that set last
	up, down         int32 // node indexes
	count            uint32
	kind, outcome    uint8
}

type nodeRec struct {
	name     string
	down, up []int32          // folds where the node is up (its downstream links) and down
	byDown   map[uint64]int32 // (other, kind) → fold, for nodes with many downstream links
	id       int64
	typ      uint8 // index in nodeTypeNames
}

// nodeTypeNames are the node types a nodeRec's typ stands for; 0 is none.
var nodeTypeNames = []string{"", NodeCommit, NodeRelease, NodeModel, NodeDataset, NodeTarget, NodeRollout}

func nodeTypeID(name string) uint8 {
	t := NodeType(name)
	for i, n := range nodeTypeNames {
		if n == t {
			return uint8(i)
		}
	}
	return 0
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

// span is a stretch of time [from, to) in which model was the active
// deployment of one (target, release); to is math.MaxInt64 while it still is.
type span struct {
	model, from, to int64
}

// modelSpans are the spans of one model, as (target, release) entries.
// byFrom[:sorted] is ordered by from and byTo orders it by to; entries
// appended after sorted, and dead ones, exist only during a refresh.
type modelSpans struct {
	byFrom []spanEntry
	byTo   []int32
	sorted int
	dead   int
}

type spanEntry struct {
	target   int64
	from, to int64
	rel      uint32
	dead     bool
}

// maxGapAge is how long an id skipped over is waited for: a PostgreSQL
// transaction that took a sequence value commits within it, or rolled back
// (or lost an ON CONFLICT race) and never will.
const maxGapAge = time.Minute

// maxGaps bounds the ids waited for; the oldest are dropped first.
const maxGaps = 4096

func newMemIndex() *memIndex {
	return &memIndex{
		gaps: map[int64]time.Time{}, nodes: []nodeRec{{}}, nodeIdx: map[int64]int32{}, deploys: map[tgtRel][]deployEvent{},
		relIDs: map[string]uint32{"": 0}, rels: []string{""}, tgtRels: map[int64][]uint32{},
		prov: map[int64][]provEdge{}, strs: []string{""}, strIDs: map[string]uint32{"": 0},
		kinds: []string{""}, kindIDs: map[string]uint8{"": 0},
		spans: map[int64]*modelSpans{}, touched: map[tgtRel][]span{},
	}
}

// loadIndex builds the index from the database in the background and
// installs it when done; until then (or when it fails) queries use SQL.
func (g *Graph) loadIndex(ctx context.Context) {
	ix := newMemIndex()
	start, writes := time.Now(), g.writes.Load()
	err := g.read(ctx, func(r *reader) error {
		tx, err := r.begin(ctx)
		if err != nil {
			return err
		}
		if err := ix.refresh(ctx, tx, g.db.Rebind, g.now()); err != nil {
			return err
		}
		ix.pack()
		return g.warmNames(ctx, tx, ix)
	})
	if err == nil {
		g.checked(start, writes)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err == nil {
		g.index = ix
	}
	close(g.indexReady)
}

// pack moves what the first load built in many small slices and strings
// (node names and link lists, deployment events, releases and spans) into
// a few large ones, each small slice becoming a window of a large one with
// no room to grow (an append after the load moves it out on its own). The
// garbage collector then marks a few large objects instead of hundreds of
// thousands of small ones, which is most of what each of its cycles cost
// the queries running meanwhile.
func (ix *memIndex) pack() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	nameBytes, links := 0, 0
	for i := range ix.nodes {
		nameBytes += len(ix.nodes[i].name)
		links += len(ix.nodes[i].down) + len(ix.nodes[i].up)
	}
	names := make([]byte, 0, nameBytes)
	lists := make([]int32, 0, links)
	window := func(s []int32) []int32 {
		start := len(lists)
		lists = append(lists, s...)
		return lists[start:len(lists):len(lists)]
	}
	for i := range ix.nodes {
		n := &ix.nodes[i]
		if n.name != "" {
			start := len(names)
			names = append(names, n.name...)
			n.name = unsafe.String(&names[start], len(n.name))
		}
		n.down, n.up = window(n.down), window(n.up)
	}
	events := 0
	for _, evs := range ix.deploys {
		events += len(evs)
	}
	arena := make([]deployEvent, 0, events)
	for tr, evs := range ix.deploys {
		start := len(arena)
		arena = append(arena, evs...)
		ix.deploys[tr] = arena[start:len(arena):len(arena)]
	}
	rels := 0
	for _, rs := range ix.tgtRels {
		rels += len(rs)
	}
	relArena := make([]uint32, 0, rels)
	for t, rs := range ix.tgtRels {
		start := len(relArena)
		relArena = append(relArena, rs...)
		ix.tgtRels[t] = relArena[start:len(relArena):len(relArena)]
	}
	entries := 0
	for _, ms := range ix.spans {
		entries += len(ms.byFrom)
	}
	fromArena, toArena := make([]spanEntry, 0, entries), make([]int32, 0, entries)
	for _, ms := range ix.spans {
		start := len(fromArena)
		fromArena = append(fromArena, ms.byFrom...)
		toArena = append(toArena, ms.byTo...)
		ms.byFrom, ms.byTo = fromArena[start:len(fromArena):len(fromArena)], toArena[start:len(toArena):len(toArena)]
	}
}

// warmNames fills the node id cache with every node (up to maxCachedIDs),
// so that lookups and the answers that name nodes outside the index need
// no query; the names the index holds are shared, not copied. Nodes
// recorded later are cached as they are written or first read.
func (g *Graph) warmNames(ctx context.Context, tx *sql.Tx, ix *memIndex) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, name FROM lineage_nodes ORDER BY id LIMIT `+fmt.Sprint(maxCachedIDs/2))
	if err != nil {
		return fmt.Errorf("lineage index: node names: %w", err)
	}
	defer rows.Close()
	ids := map[string]int64{}
	for rows.Next() {
		var id int64
		var raw sql.RawBytes
		if err := rows.Scan(&id, &raw); err != nil {
			return fmt.Errorf("lineage index: node names: %w", err)
		}
		name := ""
		if i, ok := ix.nodeIdx[id]; ok && ix.nodes[i].name == string(raw) {
			name = ix.nodes[i].name
		} else {
			name = string(raw)
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

// memory returns the loaded index, brought up to date as the reader needs,
// or nil when queries must use SQL.
//
// A strict reader, or one that already read SQL in its transaction, has
// the index caught up with what its transaction sees, as before every
// answer. Any other is answered from the index as it is when it was
// checked against the database less than maxStale ago and no edge was
// committed since through a Graph on the same *sqldb.DB (see current): no
// round trip at all.
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
	var err error
	if r.strict || r.tx != nil {
		start, writes := time.Now(), r.writes.Load()
		var tx *sql.Tx
		if tx, err = r.begin(ctx); err == nil {
			if err = ix.refresh(ctx, tx, r.db.Rebind, r.now()); err == nil {
				r.checked(start, writes)
			}
		}
	} else {
		err = r.current(ctx, ix)
	}
	if err != nil {
		r.noMem = true // answer from SQL this time
		return nil
	}
	r.mem = ix
	return ix
}

// current makes sure ix holds every edge committed through a Graph on db
// in this process and every edge committed before maxStale ago, checking
// the database only when the last check is older than that (or such a
// commit came after it). Past half the bound it answers from ix as it is
// and has a check run in the background, so that a steady stream of
// queries seldom waits for one.
func (g *Graph) current(ctx context.Context, ix *memIndex) error {
	writes := g.writes.Load()
	g.fresh.mu.Lock()
	age := time.Since(g.fresh.checked)
	ok := g.fresh.writes == writes && !g.fresh.checked.IsZero() && age <= g.maxStale
	background := ok && age > g.maxStale/2 && !g.fresh.busy
	if background {
		g.fresh.busy = true
	}
	g.fresh.mu.Unlock()
	if background {
		go func() {
			defer func() {
				g.fresh.mu.Lock()
				g.fresh.busy = false
				g.fresh.mu.Unlock()
			}()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			g.check(ctx, ix) // failing, the first query past the bound checks itself
		}()
	}
	if ok {
		return nil
	}
	return g.check(ctx, ix)
}

// check brings ix up to date with the database: one SELECT of the highest
// edge id outside any transaction, and only when edges are missing (or
// ids skipped are waited for) a read transaction that loads them.
func (g *Graph) check(ctx context.Context, ix *memIndex) error {
	start, writes := time.Now(), g.writes.Load()
	s, err := g.stmt(ctx, `SELECT MAX(id) FROM lineage_edges`)
	if err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	var max sql.NullInt64
	if err := s.QueryRowContext(ctx).Scan(&max); err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	if !ix.upToDate(max.Int64) {
		tx, err := g.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return fmt.Errorf("lineage index: begin: %w", err)
		}
		err = ix.refresh(ctx, tx, g.db.Rebind, g.now())
		tx.Rollback()
		if err != nil {
			return err
		}
	}
	g.checked(start, writes)
	return nil
}

// checked notes a check of the index that began at start, when the count
// of this process's commits was writes, and succeeded.
func (g *Graph) checked(start time.Time, writes uint64) {
	g.fresh.mu.Lock()
	defer g.fresh.mu.Unlock()
	if start.After(g.fresh.checked) {
		g.fresh.checked = start
	}
	g.fresh.writes = max(g.fresh.writes, writes)
}

// upToDate reports whether the index holds every edge up to id max and
// waits for no id skipped before.
func (ix *memIndex) upToDate(max int64) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return max <= ix.watermark && len(ix.gaps) == 0 && len(ix.unnamed) == 0 // unnamed: a refresh that failed after its scan
}

// refresh loads the edges above the watermark and those under it that were
// skipped before (see gaps).
func (ix *memIndex) refresh(ctx context.Context, tx *sql.Tx, rebind func(string) string, now time.Time) error {
	var max sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM lineage_edges`).Scan(&max); err != nil {
		return fmt.Errorf("lineage index: %w", err)
	}
	if ix.upToDate(max.Int64) {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	// Whatever was added, even when a scan fails half way, leaves the
	// spans and names consistent with the folds and events.
	defer ix.settle()
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
	return ix.name(ctx, tx, rebind)
}

// name loads the names of the nodes added since the last refresh: all of
// lineage_nodes in one scan when there are many (the first load), else by
// id. A node is written before (or with) the edges that refer to it, so
// the transaction that saw an edge sees its nodes.
func (ix *memIndex) name(ctx context.Context, tx *sql.Tx, rebind func(string) string) error {
	if len(ix.unnamed) == 0 {
		return nil
	}
	set := func(rows *sql.Rows) error {
		defer rows.Close()
		for rows.Next() {
			var id int64
			var raw sql.RawBytes
			if err := rows.Scan(&id, &raw); err != nil {
				return fmt.Errorf("lineage index: node names: %w", err)
			}
			if i, ok := ix.nodeIdx[id]; ok && ix.nodes[i].name == "" {
				n := &ix.nodes[i]
				n.name = string(raw)
				n.typ = nodeTypeID(n.name)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("lineage index: node names: %w", err)
		}
		return nil
	}
	if len(ix.unnamed) > 4096 {
		rows, err := tx.QueryContext(ctx, `SELECT id, name FROM lineage_nodes`)
		if err != nil {
			return fmt.Errorf("lineage index: node names: %w", err)
		}
		if err := set(rows); err != nil {
			return err
		}
	} else {
		for ids := ix.unnamed; len(ids) > 0; {
			n := min(len(ids), 500)
			args := make([]any, n)
			for i, x := range ids[:n] {
				args[i] = ix.nodes[x].id
			}
			rows, err := tx.QueryContext(ctx, rebind(`SELECT id, name FROM lineage_nodes WHERE id IN (?`+strings.Repeat(", ?", n-1)+`)`), args...)
			if err != nil {
				return fmt.Errorf("lineage index: node names: %w", err)
			}
			if err := set(rows); err != nil {
				return err
			}
			ids = ids[n:]
		}
	}
	ix.unnamed = ix.unnamed[:0]
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

// node returns the index of node id, adding it (unnamed until refresh
// names it) when new.
func (ix *memIndex) node(id int64) int32 {
	if i, ok := ix.nodeIdx[id]; ok {
		return i
	}
	i := int32(len(ix.nodes))
	ix.nodes = append(ix.nodes, nodeRec{id: id})
	ix.nodeIdx[id] = i
	ix.unnamed = append(ix.unnamed, i)
	return i
}

// byDownThreshold is the number of links above which a search for the link
// of a new edge, in the shorter of its upstream node's downstream links and
// its downstream node's upstream ones, uses a map of the former instead.
// Most edges have one short side (a target ran few models, a model has few
// sources), so few nodes need the map.
const byDownThreshold = 16

// findFold returns the fold of kind k from node ui to node di, -1 when none.
func (ix *memIndex) findFold(ui, di int32, k uint8) int32 {
	un, dn := &ix.nodes[ui], &ix.nodes[di]
	if un.byDown != nil {
		if f, ok := un.byDown[uint64(di)<<8|uint64(k)]; ok {
			return f
		}
		return -1
	}
	list := un.down
	if len(dn.up) < len(list) {
		list = dn.up
	}
	for _, f := range list {
		if ix.folds[f].up == ui && ix.folds[f].down == di && ix.folds[f].kind == k {
			return f
		}
	}
	return -1
}

func (ix *memIndex) add(id int64, kind string, up, down, at int64, phase, outcome, rel, attrs string) {
	ix.edges++
	k, o := ix.kindID(kind), ix.kindID(outcome)
	ui, di := ix.node(up), ix.node(down)
	un := &ix.nodes[ui]
	key := uint64(di)<<8 | uint64(k)
	fi := ix.findFold(ui, di, k)
	if fi >= 0 {
		f := &ix.folds[fi]
		f.count++
		f.first = min(f.first, at)
		if at > f.last || (at == f.last && id > f.lid) {
			f.last, f.lid, f.outcome = at, id, o
		}
	} else {
		ix.folds = append(ix.folds, fold{up: ui, down: di, first: at, last: at, lid: id, count: 1, kind: k, outcome: o})
		fi = int32(len(ix.folds) - 1)
		un.down = append(un.down, fi)
		dn := &ix.nodes[di]
		dn.up = append(dn.up, fi)
		if un.byDown != nil {
			un.byDown[key] = fi
		} else if len(un.down) > byDownThreshold && len(dn.up) > byDownThreshold {
			un.byDown = make(map[uint64]int32, 2*len(un.down))
			for _, f := range un.down {
				un.byDown[uint64(ix.folds[f].down)<<8|uint64(ix.folds[f].kind)] = f
			}
		}
	}
	if kind == EdgeDeployedTo {
		r := ix.relID(rel)
		tr := tgtRel{down, r}
		evs := ix.deploys[tr]
		if len(evs) == 0 {
			ix.tgtRels[down] = append(ix.tgtRels[down], r)
		}
		if _, ok := ix.touched[tr]; !ok {
			ix.touched[tr] = ix.spansOf(evs)
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

// walkScratch is what a walk reuses from one to the next: a visited set
// over node indexes (a node is marked when its entry holds the walk's
// generation) and the nodes and folds reached, in order.
type walkScratch struct {
	gen    uint32
	marks  []uint32
	nodes  []int32 // reached, after the root
	depths []int32 // of nodes
	folds  []int32
}

var walkPool = sync.Pool{New: func() any { return &walkScratch{} }}

func getScratch(nodes int) *walkScratch {
	w := walkPool.Get().(*walkScratch)
	if len(w.marks) < nodes {
		w.marks = make([]uint32, nodes+nodes/4)
		w.gen = 0
	}
	w.gen++
	if w.gen == 0 {
		clear(w.marks)
		w.gen = 1
	}
	w.nodes, w.depths, w.folds = w.nodes[:0], w.depths[:0], w.folds[:0]
	return w
}

// walk is walkFrom over the index: the same nodes, depths and links, added
// to sg (which holds the root). It finds them first and then builds the
// answer in slices of the final size.
func (ix *memIndex) walk(rootID int64, depth int, upstream bool, sg *Subgraph) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	root, ok := ix.nodeIdx[rootID]
	if !ok {
		return
	}
	w := getScratch(len(ix.nodes))
	defer walkPool.Put(w)
	w.marks[root] = w.gen
	for d, start := 1, -1; d <= depth && !sg.Truncated; d++ {
		// The frontier is the root, then the nodes reached at depth d-1.
		frontier := w.nodes[max(start, 0):]
		if start < 0 {
			frontier = []int32{root}
		}
		start = len(w.nodes)
		for _, n := range frontier {
			list := ix.nodes[n].down
			if upstream {
				list = ix.nodes[n].up
			}
			for _, fi := range list {
				f := &ix.folds[fi]
				other := f.down
				if upstream {
					other = f.up
				}
				if w.marks[other] != w.gen {
					if 1+len(w.nodes) >= MaxNodes {
						sg.Truncated = true
						continue
					}
					w.marks[other] = w.gen
					w.nodes = append(w.nodes, other)
					w.depths = append(w.depths, int32(d))
				}
				w.folds = append(w.folds, fi)
			}
		}
		if len(w.nodes) == start {
			break
		}
	}
	sg.Nodes = slices.Grow(sg.Nodes, len(w.nodes))
	for i, n := range w.nodes {
		o := &ix.nodes[n]
		sg.Nodes = append(sg.Nodes, NodeInfo{ID: o.name, Type: nodeTypeNames[o.typ], Depth: int(w.depths[i])})
	}
	sg.Links = slices.Grow(sg.Links, len(w.folds))
	for _, fi := range w.folds {
		sg.Links = append(sg.Links, ix.link(&ix.folds[fi]))
	}
}

// link is a fold as a Link.
func (ix *memIndex) link(f *fold) Link {
	typ := ix.kinds[f.kind]
	from, to := fromUpDown(typ, ix.nodes[f.up].name, ix.nodes[f.down].name)
	l := Link{Type: typ, From: from, To: to, First: time.UnixMicro(f.first).UTC(), Last: time.UnixMicro(f.last).UTC(), Count: int(f.count)}
	if typ == EdgeDeployedTo {
		l.Outcome = ix.kinds[f.outcome]
	}
	return l
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
	evs := ix.deploys[tgtRel{target, r}]
	i := ix.activeAt(evs, at)
	if i < 0 {
		return nil
	}
	return ix.deployment(&evs[i])
}

func (ix *memIndex) deployment(ev *deployEvent) *deployment {
	return &deployment{model: ev.model, at: ev.at, outcome: ix.kinds[ev.outcome], attrs: ix.strs[ev.attrs]}
}

// fewSet is a set that holds its first members inline: the deployment
// walks below see one or two.
type fewSet[K comparable] struct {
	few  [8]K
	n    int
	many map[K]bool
}

func (s *fewSet[K]) has(k K) bool {
	for i := 0; i < s.n; i++ {
		if s.few[i] == k {
			return true
		}
	}
	return s.many[k]
}

func (s *fewSet[K]) add(k K) {
	if s.n < len(s.few) {
		s.few[s.n] = k
		s.n++
		return
	}
	if s.many == nil {
		s.many = map[K]bool{}
	}
	s.many[k] = true
}

// activeAt is the index in evs (one target and release, in time order) of
// the start event of the deployment active at at, -1 when none: reader.
// activeOn's walk backwards from at.
func (ix *memIndex) activeAt(evs []deployEvent, at int64) int {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].at > at }) - 1
	var ended fewSet[int64]
	var decided fewSet[[2]int64]
	for ; i >= 0; i-- {
		ev := &evs[i]
		if ev.end {
			ended.add(ev.model)
			continue
		}
		key := [2]int64{ev.model, ev.at}
		if decided.has(key) {
			continue
		}
		decided.add(key)
		outcome := ix.kinds[ev.outcome]
		if outcome == OutcomeRemoved {
			return -1
		}
		if outcome == OutcomeFailed || ended.has(ev.model) {
			continue
		}
		return i
	}
	return -1
}

// spansOf returns the spans of evs (one target and release): the active
// deployment changes only at the time of an event, so it is asked at each.
func (ix *memIndex) spansOf(evs []deployEvent) []span {
	var out []span
	for i := 0; i < len(evs); {
		t := evs[i].at
		j := i + 1
		for j < len(evs) && evs[j].at == t {
			j++
		}
		model := int64(-1)
		if a := ix.activeAt(evs[:j], t); a >= 0 {
			model = evs[a].model
		}
		if n := len(out); n > 0 && out[n-1].to == math.MaxInt64 {
			if out[n-1].model == model {
				i = j
				continue
			}
			out[n-1].to = t
		}
		if model >= 0 {
			out = append(out, span{model: model, from: t, to: math.MaxInt64})
		}
		i = j
	}
	return out
}

// settle replaces the spans of the (target, release) pairs given new events
// since the last settle, and orders the spans of the models concerned.
func (ix *memIndex) settle() {
	if len(ix.touched) == 0 {
		return
	}
	dirty := map[*modelSpans]bool{}
	for tr, old := range ix.touched {
		if evs := ix.deploys[tr]; cap(evs) > len(evs)+len(evs)/4+1 {
			ix.deploys[tr] = slices.Clone(evs) // most pairs have a few events: no room for twice as many
		}
		for _, s := range old {
			if ms := ix.spans[s.model]; ms != nil {
				ms.remove(tr, s.from, s.to)
				dirty[ms] = true
			}
		}
		for _, s := range ix.spansOf(ix.deploys[tr]) {
			ms := ix.spans[s.model]
			if ms == nil {
				ms = &modelSpans{}
				ix.spans[s.model] = ms
			}
			ms.byFrom = append(ms.byFrom, spanEntry{target: tr.target, rel: tr.rel, from: s.from, to: s.to})
			dirty[ms] = true
		}
	}
	ix.touched = map[tgtRel][]span{}
	for ms := range dirty {
		ms.settle()
	}
}

// remove marks the settled entry of tr spanning [from, to) dead.
func (ms *modelSpans) remove(tr tgtRel, from, to int64) {
	e := ms.byFrom[:ms.sorted]
	for i := sort.Search(len(e), func(i int) bool { return e[i].from >= from }); i < len(e) && e[i].from == from; i++ {
		if x := &e[i]; !x.dead && x.target == tr.target && x.rel == tr.rel && x.to == to {
			x.dead = true
			ms.dead++
			return
		}
	}
}

// settle orders the entries appended since the last settle and merges them
// into byFrom and byTo, dropping dead ones: linear in the model's spans
// (plus sorting the new ones), as a refresh may touch a model deployed to
// the whole fleet.
func (ms *modelSpans) settle() {
	n := ms.sorted
	tail := ms.byFrom[n:]
	if len(tail) == 0 && ms.dead == 0 {
		return
	}
	slices.SortFunc(tail, compareFrom)
	byFrom := make([]spanEntry, 0, n-ms.dead+len(tail))
	moved := make([]int32, n) // new index of each settled entry, -1 when dead
	added := make([]int32, 0, len(tail))
	for i, j := 0, 0; i < n || j < len(tail); {
		switch {
		case i < n && ms.byFrom[i].dead:
			moved[i] = -1
			i++
		case j == len(tail) || (i < n && compareFrom(ms.byFrom[i], tail[j]) <= 0):
			moved[i] = int32(len(byFrom))
			byFrom = append(byFrom, ms.byFrom[i])
			i++
		default:
			added = append(added, int32(len(byFrom)))
			byFrom = append(byFrom, tail[j])
			j++
		}
	}
	to := func(i int32) int64 { return byFrom[i].to }
	slices.SortFunc(added, func(a, b int32) int { return cmp.Compare(to(a), to(b)) })
	byTo := make([]int32, 0, len(byFrom))
	j := 0
	for _, old := range ms.byTo {
		x := moved[old]
		if x < 0 {
			continue
		}
		for j < len(added) && to(added[j]) < to(x) {
			byTo = append(byTo, added[j])
			j++
		}
		byTo = append(byTo, x)
	}
	byTo = append(byTo, added[j:]...)
	ms.byFrom, ms.byTo, ms.sorted, ms.dead = byFrom, byTo, len(byFrom), 0
}

func compareFrom(a, b spanEntry) int {
	if c := cmp.Compare(a.from, b.from); c != 0 {
		return c
	}
	if c := cmp.Compare(a.target, b.target); c != 0 {
		return c
	}
	return cmp.Compare(a.rel, b.rel)
}

// running appends to out the (target, release) pairs whose active
// deployment at at was model: of the spans that started by at and those
// that ended after it, it reads the fewer.
func (ms *modelSpans) running(at int64, out []tgtRel) []tgtRel {
	started := sort.Search(len(ms.byFrom), func(i int) bool { return ms.byFrom[i].from > at })
	ending := sort.Search(len(ms.byTo), func(i int) bool { return ms.byFrom[ms.byTo[i]].to > at })
	if started <= len(ms.byTo)-ending {
		for i := range ms.byFrom[:started] {
			if e := &ms.byFrom[i]; e.to > at && !e.dead {
				out = append(out, tgtRel{e.target, e.rel})
			}
		}
		return out
	}
	for _, i := range ms.byTo[ending:] {
		if e := &ms.byFrom[i]; e.from <= at && !e.dead {
			out = append(out, tgtRel{e.target, e.rel})
		}
	}
	return out
}

// whereHit is a (target, release) whose active deployment at a time was
// one of Where's models.
type whereHit struct {
	target string // node name
	rel    string
	d      *deployment
}

// where is reader.where over the index: the models that are one of roots
// (isModel says which are models) or derive from one through trainedOn and
// packagedFrom edges recorded by at, then the (target, release) pairs
// running one of them at at.
func (ix *memIndex) where(roots []int64, at int64) []whereHit {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	model := uint8(slices.Index(nodeTypeNames, NodeModel))
	seen := map[int32]bool{}
	var models []int32
	var frontier []int32
	for _, id := range roots {
		if i, ok := ix.nodeIdx[id]; ok && !seen[i] {
			seen[i] = true
			frontier = append(frontier, i)
			if ix.nodes[i].typ == model {
				models = append(models, i)
			}
		}
	}
	trained, packaged := ix.kindIDs[EdgeTrainedOn], ix.kindIDs[EdgePackagedFrom]
	for len(frontier) > 0 && len(seen) < MaxNodes {
		var next []int32
		for _, n := range frontier {
			for _, fi := range ix.nodes[n].down {
				f := &ix.folds[fi]
				if (f.kind == trained || f.kind == packaged) && f.kind != 0 && f.first <= at && !seen[f.down] {
					seen[f.down] = true
					next = append(next, f.down)
					if ix.nodes[f.down].typ == model {
						models = append(models, f.down)
					}
				}
			}
		}
		frontier = next
	}
	var hits []whereHit
	var trs []tgtRel
	for _, m := range models {
		id := ix.nodes[m].id
		ms := ix.spans[id]
		if ms == nil {
			continue
		}
		trs = ms.running(at, trs[:0])
		for _, tr := range trs {
			evs := ix.deploys[tr]
			if i := ix.activeAt(evs, at); i >= 0 && evs[i].model == id {
				hits = append(hits, whereHit{target: ix.nodes[ix.nodeIdx[tr.target]].name, rel: ix.rels[tr.rel], d: ix.deployment(&evs[i])})
			}
		}
	}
	return hits
}

// provenance returns, as of at, the commit of the latest declaredIn edge
// from model to release node rid (0 for none), the commit the model was
// packaged from by the latest packagedFrom edge (0 for none) and the
// datasets it was trained on.
func (ix *memIndex) provenance(model, rid, at int64) (commit string, source int64, datasets []int64) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var best, src *provEdge
	later := func(p, than *provEdge) bool {
		return than == nil || p.at > than.at || (p.at == than.at && p.id > than.id)
	}
	for i := range ix.prov[model] {
		p := &ix.prov[model][i]
		if p.at > at {
			continue
		}
		switch ix.kinds[p.kind] {
		case EdgeDeclaredIn:
			if rid != 0 && p.up == rid && later(p, best) {
				best = p
			}
		case EdgePackagedFrom:
			if later(p, src) {
				src = p
				source = p.up
			}
		case EdgeTrainedOn:
			if !slices.Contains(datasets, p.up) {
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
	const mapEntry = 16 // a map's own cost per entry beyond key and value, roughly
	b := int64(cap(ix.folds))*int64(unsafe.Sizeof(fold{})) + int64(cap(ix.nodes))*int64(unsafe.Sizeof(nodeRec{}))
	b += int64(len(ix.nodeIdx)) * (12 + mapEntry)
	for i := range ix.nodes {
		n := &ix.nodes[i]
		b += int64(cap(n.down)+cap(n.up))*4 + int64(len(n.name))
		b += int64(len(n.byDown)) * (12 + mapEntry)
	}
	for _, evs := range ix.deploys {
		b += int64(cap(evs))*int64(unsafe.Sizeof(deployEvent{})) + 40 + mapEntry
	}
	for _, rs := range ix.tgtRels {
		b += int64(cap(rs))*4 + 32 + mapEntry
	}
	for _, p := range ix.prov {
		b += int64(cap(p))*int64(unsafe.Sizeof(provEdge{})) + 32 + mapEntry
	}
	for _, ms := range ix.spans {
		b += int64(cap(ms.byFrom))*int64(unsafe.Sizeof(spanEntry{})) + int64(cap(ms.byTo))*4 + int64(unsafe.Sizeof(*ms)) + 16 + mapEntry
	}
	for _, s := range ix.strs {
		b += int64(len(s)) + 16 + 20 + mapEntry
	}
	return IndexStats{Loaded: true, Edges: ix.edges, Bytes: b}
}
