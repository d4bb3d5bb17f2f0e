package lineage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/errdef"
)

// DefaultDepth is the depth of Upstream and Downstream when none is given.
const DefaultDepth = 5

// MaxNodes bounds the nodes a walk returns; the result says it was truncated.
const MaxNodes = 10000

// ErrNotFound is returned when a query names a node lineage never recorded
// (errdef.ErrNotFound); the HTTP API answers it with 404.
var ErrNotFound = errdef.ErrNotFound

// notFound is the error of a query whose node lineage never recorded.
func notFound(op, node string) error {
	return fmt.Errorf("%s %s: no such node in lineage: %w", op, node, ErrNotFound)
}

// NodeInfo is a node reached by a walk, with its distance from the root.
type NodeInfo struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Depth int    `json:"depth"`
}

// Link is an edge of a subgraph: every recorded edge of one type between two
// nodes, folded into one with the first and last time and how many there were.
type Link struct {
	Type    string    `json:"type"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Count   int       `json:"count"`
	Outcome string    `json:"outcome,omitempty"` // deployedTo: outcome of the last event
}

// Subgraph is the answer of Upstream and Downstream.
type Subgraph struct {
	Root      string     `json:"root"`
	Direction string     `json:"direction"` // upstream or downstream
	Depth     int        `json:"depth"`
	Nodes     []NodeInfo `json:"nodes"`
	Links     []Link     `json:"links"`
	Truncated bool       `json:"truncated,omitempty"`
}

// Upstream returns what node derives from, up to depth edges away (depth
// <= 0 means DefaultDepth). node is "type:id", or a bare digest (a model,
// else a dataset) or a bare name (a target): for a target the models it ran, their datasets,
// commits and releases.
func (g *Graph) Upstream(ctx context.Context, node string, depth int) (*Subgraph, error) {
	return g.walkRead(ctx, node, depth, true)
}

// Downstream returns what derives from node, up to depth edges away: for a
// dataset the models trained on it and the targets they were deployed to.
func (g *Graph) Downstream(ctx context.Context, node string, depth int) (*Subgraph, error) {
	return g.walkRead(ctx, node, depth, false)
}

// candidates are the nodes an argument may name: a typed node as it is, a
// bare digest a model or else a dataset, anything else a target.
func candidates(arg string) []string {
	switch {
	case NodeType(arg) != "":
		return []string{arg}
	case strings.HasPrefix(arg, "sha256:") || isHex64(arg):
		return []string{Node(NodeModel, sha(arg)), Node(NodeDataset, sha(arg))}
	case arg != "" && !strings.Contains(arg, ":"):
		return []string{Node(NodeTarget, arg)}
	}
	return []string{arg}
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (g *Graph) walkRead(ctx context.Context, arg string, depth int, upstream bool) (sg *Subgraph, err error) {
	err = g.read(ctx, func(r *reader) error { sg, err = r.walk(ctx, arg, depth, upstream); return err })
	return sg, err
}

// walk walks from the first candidate of arg that has edges, else from the
// first one recorded; ErrNotFound when lineage recorded none of them.
func (r *reader) walk(ctx context.Context, arg string, depth int, upstream bool) (*Subgraph, error) {
	var first *Subgraph
	for _, c := range candidates(arg) {
		sg, found, err := r.walkFrom(ctx, c, depth, upstream)
		if err != nil {
			return nil, err
		}
		if found && len(sg.Links) > 0 {
			return sg, nil
		}
		if found && first == nil {
			first = sg
		}
	}
	if first == nil {
		dir := "downstream"
		if upstream {
			dir = "upstream"
		}
		return nil, notFound(dir, arg)
	}
	return first, nil
}

// walkFrom walks from root; found says lineage recorded root.
func (r *reader) walkFrom(ctx context.Context, root string, depth int, upstream bool) (_ *Subgraph, found bool, _ error) {
	if _, _, err := SplitNode(root); err != nil {
		return nil, false, err
	}
	if depth <= 0 {
		depth = DefaultDepth
	}
	dir, near := "downstream", "up"
	if upstream {
		dir, near = "upstream", "down"
	}
	sg := &Subgraph{Root: root, Direction: dir, Depth: depth, Nodes: []NodeInfo{{ID: root, Type: NodeType(root)}}, Links: []Link{}}
	rootID, ok, err := r.lookup(ctx, root)
	if err != nil || !ok {
		return sg, false, err
	}
	if ix := r.memory(ctx); ix != nil {
		ix.walk(rootID, depth, upstream, sg)
		return sg, true, nil
	}
	type lk struct {
		typ      string
		up, down int64
	}
	type acc struct {
		first, last int64
		count       int
		outcome     string
	}
	links := map[lk]*acc{}
	var order []lk
	depthOf := map[int64]int{rootID: 0}
	reached := []int64{rootID}
	frontier := []int64{rootID}
	for d := 1; d <= depth && len(frontier) > 0 && !sg.Truncated; d++ {
		var next []int64
		err := r.each(ctx, `SELECT kind, up, down, at, outcome FROM lineage_edges WHERE `+near+` IN (%s)`, frontier, func(rows *sql.Rows) error {
			var k lk
			var at int64
			var kind, outcomeB sql.RawBytes
			if err := rows.Scan(&kind, &k.up, &k.down, &at, &outcomeB); err != nil {
				return err
			}
			k.typ = intern(kind)
			outcome := intern(outcomeB)
			other := k.down
			if upstream {
				other = k.up
			}
			if _, ok := depthOf[other]; !ok {
				if len(depthOf) >= MaxNodes {
					sg.Truncated = true
					return nil
				}
				depthOf[other] = d
				reached = append(reached, other)
				next = append(next, other)
			}
			if a := links[k]; a != nil {
				a.count++
				a.first = min(a.first, at)
				if at >= a.last {
					a.last, a.outcome = at, outcome
				}
			} else {
				links[k] = &acc{first: at, last: at, count: 1, outcome: outcome}
				order = append(order, k)
			}
			return nil
		})
		if err != nil {
			return nil, true, fmt.Errorf("walk %s of %s: %w", dir, root, err)
		}
		frontier = next
	}
	names, err := r.namesOf(ctx, reached)
	if err != nil {
		return nil, true, fmt.Errorf("walk %s of %s: %w", dir, root, err)
	}
	for _, id := range reached[1:] {
		sg.Nodes = append(sg.Nodes, NodeInfo{ID: names[id], Type: NodeType(names[id]), Depth: depthOf[id]})
	}
	sg.Links = make([]Link, 0, len(order))
	for _, k := range order {
		a := links[k]
		from, to := fromUpDown(k.typ, names[k.up], names[k.down])
		l := Link{Type: k.typ, From: from, To: to, First: time.UnixMicro(a.first).UTC(), Last: time.UnixMicro(a.last).UTC(), Count: a.count}
		if k.typ == EdgeDeployedTo {
			l.Outcome = a.outcome
		}
		sg.Links = append(sg.Links, l)
	}
	return sg, true, nil
}

// intern returns the constant for a known edge type or outcome, without
// allocating, and a copy of anything else.
func intern(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case EdgeDeclaredIn:
		return EdgeDeclaredIn
	case EdgeTrainedOn:
		return EdgeTrainedOn
	case EdgeEvaluatedOn:
		return EdgeEvaluatedOn
	case EdgePackagedFrom:
		return EdgePackagedFrom
	case EdgeDeployedTo:
		return EdgeDeployedTo
	case EdgeRolledBack:
		return EdgeRolledBack
	case EdgeDriftedFrom:
		return EdgeDriftedFrom
	case OutcomeSucceeded:
		return OutcomeSucceeded
	case OutcomeFailed:
		return OutcomeFailed
	case OutcomeProgressing:
		return OutcomeProgressing
	case OutcomeRolledBack:
		return OutcomeRolledBack
	}
	return string(b)
}

// inBuckets are the sizes of the IN (…) lists queries are prepared with; a
// list is padded to the next size with -1, which is no node's id.
var inBuckets = []int{1, 8, 64, 512}

// each runs query, whose %s is replaced by an IN list of ids, over all ids
// in lists of at most 512 and calls scan for each row.
func (r *reader) each(ctx context.Context, query string, ids []int64, scan func(*sql.Rows) error) error {
	for len(ids) > 0 {
		n := min(len(ids), inBuckets[len(inBuckets)-1])
		size := inBuckets[0]
		for _, b := range inBuckets {
			if size = b; b >= n {
				break
			}
		}
		args := make([]any, size)
		for i := range args {
			args[i] = int64(-1)
			if i < n {
				args[i] = ids[i]
			}
		}
		rows, err := r.query(ctx, fmt.Sprintf(query, "?"+strings.Repeat(", ?", size-1)), args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// lookup returns the id of a node.
func (r *reader) lookup(ctx context.Context, name string) (int64, bool, error) {
	r.mu.Lock()
	id, ok := r.ids[name]
	r.mu.Unlock()
	if ok {
		return id, true, nil
	}
	err := r.queryRow(ctx, []any{&id}, `SELECT id FROM lineage_nodes WHERE name = ?`, name)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up node %s: %w", name, err)
	}
	r.cache(map[string]int64{name: id})
	return id, true, nil
}

// namesOf returns the names of node ids.
func (r *reader) namesOf(ctx context.Context, ids []int64) (map[int64]string, error) {
	names := make(map[int64]string, len(ids))
	var missing []int64
	r.mu.Lock()
	for _, id := range ids {
		if n, ok := r.names[id]; ok {
			names[id] = n
		} else {
			missing = append(missing, id)
		}
	}
	r.mu.Unlock()
	found := map[string]int64{}
	err := r.each(ctx, `SELECT id, name FROM lineage_nodes WHERE id IN (%s)`, missing, func(rows *sql.Rows) error {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return err
		}
		names[id] = name
		found[name] = id
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("node names: %w", err)
	}
	if len(found) > 0 {
		r.cache(found)
	}
	return names, nil
}

// Active is a model active on a target for a release at a time, with where
// it came from.
type Active struct {
	Target   string    `json:"target"`
	Release  string    `json:"release,omitempty"`
	Model    string    `json:"model"` // digest
	Since    time.Time `json:"since"`
	Outcome  string    `json:"outcome"`
	Rollout  string    `json:"rollout,omitempty"`
	Commit   string    `json:"commit,omitempty"`   // commit the release was admitted at
	Source   string    `json:"source,omitempty"`   // commit the model was packaged from
	Datasets []string  `json:"datasets,omitempty"` // dataset nodes it was trained on
}

// At answers which model was active on target at t, for each release the
// target ever ran (most targets run one), from which release and commit and
// trained on which datasets. An empty answer means nothing ran.
func (g *Graph) At(ctx context.Context, target string, t time.Time) (out []Active, err error) {
	err = g.read(ctx, func(r *reader) error { out, err = r.at(ctx, target, t); return err })
	return out, err
}

func (r *reader) at(ctx context.Context, target string, t time.Time) ([]Active, error) {
	node := targetNode(target)
	tid, ok, err := r.lookup(ctx, node)
	if err != nil || !ok {
		// A target lineage never saw is one nothing was deployed to yet
		// (lineage does not know enrolment): an empty answer, not
		// ErrNotFound.
		return nil, err
	}
	rels, err := r.targetReleases(ctx, tid)
	if err != nil {
		return nil, fmt.Errorf("at %s: %w", node, err)
	}
	var out []Active
	for _, rel := range rels {
		d, err := r.activeOn(ctx, tid, rel, t)
		if err != nil {
			return nil, fmt.Errorf("at %s: %w", node, err)
		}
		if d == nil {
			continue
		}
		a, err := r.describe(ctx, node, rel, d, t)
		if err != nil {
			return nil, fmt.Errorf("at %s: %w", node, err)
		}
		out = append(out, a)
	}
	return out, nil
}

func targetNode(target string) string {
	if NodeType(target) == NodeTarget {
		return target
	}
	return Node(NodeTarget, target)
}

func (r *reader) targetReleases(ctx context.Context, tid int64) ([]string, error) {
	if ix := r.memory(ctx); ix != nil {
		return ix.targetReleases(tid), nil
	}
	rows, err := r.query(ctx, `SELECT rel FROM lineage_target_releases WHERE target = ? ORDER BY rel`, tid)
	if err != nil {
		return nil, fmt.Errorf("releases: %w", err)
	}
	defer rows.Close()
	var rels []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("releases: %w", err)
		}
		rels = append(rels, r)
	}
	return rels, rows.Err()
}

// deployment is the start event of the deployment active on a target.
type deployment struct {
	model   int64
	at      int64
	outcome string
	attrs   string
}

// activeOn finds the deployment of release active on target at t, walking
// the deployment events backwards from t: the latest start that did not
// fail (the first row seen of a start is its last recorded outcome) and was
// not ended since by an explicit end event.
func (r *reader) activeOn(ctx context.Context, tid int64, rel string, t time.Time) (*deployment, error) {
	at := micro(t).UnixMicro()
	if ix := r.memory(ctx); ix != nil {
		return ix.activeOn(tid, rel, at), nil
	}
	for limit := 32; ; limit *= 16 {
		rows, err := r.query(ctx, `SELECT up, at, phase, outcome, attrs FROM lineage_edges WHERE kind = 'deployedTo' AND down = ? AND rel = ? AND at <= ? ORDER BY at DESC, id DESC LIMIT ?`, tid, rel, at, limit)
		if err != nil {
			return nil, fmt.Errorf("deployments: %w", err)
		}
		n := 0
		ended := map[int64]bool{}
		decided := map[[2]int64]bool{}
		var found *deployment
		removed := false
		for rows.Next() {
			n++
			var d deployment
			var phase string
			if err := rows.Scan(&d.model, &d.at, &phase, &d.outcome, &d.attrs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("deployments: %w", err)
			}
			if phase == PhaseEnd {
				ended[d.model] = true
				continue
			}
			key := [2]int64{d.model, d.at}
			if decided[key] {
				continue // an older outcome of a start already decided
			}
			decided[key] = true
			if d.outcome == OutcomeRemoved {
				removed = true // the release was uninstalled: nothing runs
				break
			}
			if d.outcome == OutcomeFailed || ended[d.model] {
				continue
			}
			found = &d
			break
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("deployments: %w", err)
		}
		if found != nil || removed || n < limit {
			return found, nil
		}
	}
}

// describe turns an active deployment into an Active: the model's digest,
// the commit its release was admitted at, the commit it was packaged from
// and the datasets it was trained on, as known at t.
func (r *reader) describe(ctx context.Context, target, rel string, d *deployment, t time.Time) (Active, error) {
	a := Active{Target: strings.TrimPrefix(target, NodeTarget+":"), Release: rel, Since: time.UnixMicro(d.at).UTC(), Outcome: d.outcome}
	if d.attrs != "" {
		a.Rollout = rolloutOf(d.attrs)
	}
	at := micro(t).UnixMicro()
	if ix := r.memory(ctx); ix != nil {
		var rid int64
		if rel != "" {
			id, ok, err := r.lookup(ctx, Node(NodeRelease, rel))
			if err != nil {
				return a, err
			}
			if ok {
				rid = id
			}
		}
		commit, source, datasets := ix.provenance(d.model, rid, at)
		a.Commit = commit
		return r.describeNames(ctx, a, d.model, source, datasets)
	}
	var commitAttrs string
	if rel != "" {
		rid, ok, err := r.lookup(ctx, Node(NodeRelease, rel))
		if err != nil {
			return a, err
		}
		if ok {
			err := r.queryRow(ctx, []any{&commitAttrs}, `SELECT attrs FROM lineage_edges WHERE down = ? AND kind = 'declaredIn' AND up = ? AND at <= ? ORDER BY at DESC, id DESC LIMIT 1`, d.model, rid, at)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return a, fmt.Errorf("admission: %w", err)
			}
		}
	}
	var v struct {
		Commit string `json:"commit"`
	}
	if commitAttrs != "" && json.Unmarshal([]byte(commitAttrs), &v) == nil {
		a.Commit = v.Commit
	}
	rows, err := r.query(ctx, `SELECT kind, up FROM lineage_edges WHERE down = ? AND kind IN ('trainedOn', 'packagedFrom') AND at <= ? ORDER BY at, id`, d.model, at)
	if err != nil {
		return a, fmt.Errorf("sources: %w", err)
	}
	var source int64 // the latest packagedFrom edge's (rows come in time order)
	var datasets []int64
	seen := map[int64]bool{}
	for rows.Next() {
		var kind string
		var up int64
		if err := rows.Scan(&kind, &up); err != nil {
			rows.Close()
			return a, fmt.Errorf("sources: %w", err)
		}
		switch {
		case kind == EdgePackagedFrom:
			source = up
		case !seen[up]:
			seen[up] = true
			datasets = append(datasets, up)
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return a, fmt.Errorf("sources: %w", err)
	}
	return r.describeNames(ctx, a, d.model, source, datasets)
}

// describeNames fills in the names of an Active's model, source commit and
// datasets.
func (r *reader) describeNames(ctx context.Context, a Active, model, source int64, datasets []int64) (Active, error) {
	ids := []int64{model}
	if source != 0 {
		ids = append(ids, source)
	}
	names, err := r.namesOf(ctx, append(ids, datasets...))
	if err != nil {
		return a, err
	}
	_, a.Model, _ = strings.Cut(names[model], ":")
	if source != 0 {
		_, a.Source, _ = strings.Cut(names[source], ":")
	}
	for _, id := range datasets {
		a.Datasets = append(a.Datasets, names[id])
	}
	sort.Strings(a.Datasets)
	return a, nil
}

// Where lists the targets running, at t (now when nil), a model that is
// node or derives from it (following trainedOn and packagedFrom edges
// downstream): node is a model or dataset node, or a bare digest (looked up
// as both).
func (g *Graph) Where(ctx context.Context, node string, t *time.Time) (out []Active, err error) {
	err = g.read(ctx, func(r *reader) error { out, err = r.where(ctx, node, t); return err })
	return out, err
}

func (r *reader) where(ctx context.Context, node string, t *time.Time) ([]Active, error) {
	when := r.now()
	if t != nil {
		when = *t
	}
	at := micro(when).UnixMicro()
	// Models derived from the roots, following trainedOn and packagedFrom downstream.
	models := map[int64]bool{}
	seen := map[int64]bool{}
	var frontier []int64
	for _, c := range candidates(node) {
		if _, _, err := SplitNode(c); err != nil {
			return nil, err
		}
		id, ok, err := r.lookup(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("where %s: %w", node, err)
		}
		if ok && !seen[id] {
			seen[id] = true
			frontier = append(frontier, id)
			if NodeType(c) == NodeModel {
				models[id] = true
			}
		}
	}
	if len(frontier) == 0 {
		return nil, notFound("where", node)
	}
	if ix := r.memory(ctx); ix != nil {
		return r.whereIndex(ctx, ix, node, frontier, when)
	}
	for len(frontier) > 0 && len(seen) < MaxNodes {
		var next []int64
		for _, n := range frontier {
			rows, err := r.query(ctx, `SELECT DISTINCT down FROM lineage_edges WHERE up = ? AND kind IN ('trainedOn', 'packagedFrom') AND at <= ?`, n, at)
			if err != nil {
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
			for rows.Next() {
				var down int64
				if err := rows.Scan(&down); err != nil {
					rows.Close()
					return nil, fmt.Errorf("where %s: %w", node, err)
				}
				if !seen[down] {
					seen[down] = true
					next = append(next, down)
				}
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
		}
		// Only models are derived from a dataset or a model through these edges
		// (commits are upstream), but check: a node of another type is skipped.
		names, err := r.namesOf(ctx, next)
		if err != nil {
			return nil, fmt.Errorf("where %s: %w", node, err)
		}
		for _, id := range next {
			if NodeType(names[id]) == NodeModel {
				models[id] = true
			}
		}
		frontier = next
	}
	// Targets those models were deployed to by t, then which still run them.
	type tr struct {
		target int64
		rel    string
	}
	var cands []tr
	candSeen := map[tr]bool{}
	mids := make([]int64, 0, len(models))
	for m := range models {
		mids = append(mids, m)
	}
	sort.Slice(mids, func(i, j int) bool { return mids[i] < mids[j] })
	for _, m := range mids {
		rows, err := r.query(ctx, `SELECT DISTINCT down, rel FROM lineage_edges WHERE up = ? AND kind = 'deployedTo' AND at <= ?`, m, at)
		if err != nil {
			return nil, fmt.Errorf("where %s: deployments: %w", node, err)
		}
		for rows.Next() {
			var c tr
			if err := rows.Scan(&c.target, &c.rel); err != nil {
				rows.Close()
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
			if !candSeen[c] {
				candSeen[c] = true
				cands = append(cands, c)
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("where %s: %w", node, err)
		}
	}
	type hit struct {
		c tr
		d *deployment
	}
	var hits []hit
	var tids []int64
	for _, c := range cands {
		d, err := r.activeOn(ctx, c.target, c.rel, when)
		if err != nil {
			return nil, fmt.Errorf("where %s: %w", node, err)
		}
		if d != nil && models[d.model] {
			hits = append(hits, hit{c, d})
			tids = append(tids, c.target)
		}
	}
	names, err := r.namesOf(ctx, tids)
	if err != nil {
		return nil, fmt.Errorf("where %s: %w", node, err)
	}
	out := make([]Active, 0, len(hits))
	for _, h := range hits {
		a, err := r.describe(ctx, names[h.c.target], h.c.rel, h.d, when)
		if err != nil {
			return nil, fmt.Errorf("where %s: %w", node, err)
		}
		out = append(out, a)
	}
	sortActive(out)
	return out, nil
}

func sortActive(out []Active) {
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Release < out[j].Release
	})
}

// whereIndex is where over the index, from the nodes roots: the answer's
// provenance (commit, source, datasets) is looked up once per model and
// release, and the rollout once per attributes.
func (r *reader) whereIndex(ctx context.Context, ix *memIndex, node string, roots []int64, when time.Time) ([]Active, error) {
	at := micro(when).UnixMicro()
	hits := ix.where(roots, at)
	type modelRel struct {
		model int64
		rel   string
	}
	described := map[modelRel]Active{}
	rollouts := map[string]string{}
	out := make([]Active, 0, len(hits))
	for _, h := range hits {
		key := modelRel{h.d.model, h.rel}
		p, ok := described[key]
		if !ok {
			var err error
			if p, err = r.describe(ctx, "", h.rel, &deployment{model: h.d.model}, when); err != nil {
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
			described[key] = p
		}
		a := Active{Target: strings.TrimPrefix(h.target, NodeTarget+":"), Release: h.rel, Model: p.Model, Since: time.UnixMicro(h.d.at).UTC(), Outcome: h.d.outcome,
			Commit: p.Commit, Source: p.Source, Datasets: slices.Clone(p.Datasets)}
		if h.d.attrs != "" {
			rollout, ok := rollouts[h.d.attrs]
			if !ok {
				rollout = rolloutOf(h.d.attrs)
				rollouts[h.d.attrs] = rollout
			}
			a.Rollout = rollout
		}
		out = append(out, a)
	}
	sortActive(out)
	return out, nil
}

// rolloutOf reads the rollout of a deployment's attributes.
func rolloutOf(attrs string) string {
	var v struct {
		Rollout string `json:"rollout"`
	}
	if json.Unmarshal([]byte(attrs), &v) != nil {
		return ""
	}
	return v.Rollout
}

// Step is a recorded step as the events API lists it.
type Step struct {
	Seq   int64           `json:"seq"`
	ID    string          `json:"id"`
	RunID string          `json:"runId"`
	Kind  string          `json:"kind"`
	Time  time.Time       `json:"time"`
	Facts json.RawMessage `json:"facts"`
}

// Steps lists up to limit recorded steps after seq (0 for the first), in
// the order they were recorded. limit <= 0 means 1000.
func (g *Graph) Steps(ctx context.Context, after int64, limit int) (out []Step, err error) {
	err = g.read(ctx, func(r *reader) error { out, err = r.steps(ctx, after, limit); return err })
	return out, err
}

func (r *reader) steps(ctx context.Context, after int64, limit int) ([]Step, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := r.query(ctx, `SELECT seq, id, run_id, kind, at, facts FROM lineage_steps WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list lineage steps: %w", err)
	}
	defer rows.Close()
	var out []Step
	for rows.Next() {
		var s Step
		var at int64
		var facts string
		if err := rows.Scan(&s.Seq, &s.ID, &s.RunID, &s.Kind, &at, &facts); err != nil {
			return nil, fmt.Errorf("list lineage steps: %w", err)
		}
		s.Time = time.UnixMicro(at).UTC()
		s.Facts = json.RawMessage(facts)
		out = append(out, s)
	}
	return out, rows.Err()
}
