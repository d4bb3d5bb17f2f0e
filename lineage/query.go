package lineage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// DefaultDepth is the depth of Upstream and Downstream when none is given.
const DefaultDepth = 5

// MaxNodes bounds the nodes a walk returns; the result says it was truncated.
const MaxNodes = 10000

// ErrNotFound is returned when a node has no edges at all.
var ErrNotFound = errors.New("not found")

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
	return g.walk(ctx, node, depth, true)
}

// Downstream returns what derives from node, up to depth edges away: for a
// dataset the models trained on it and the targets they were deployed to.
func (g *Graph) Downstream(ctx context.Context, node string, depth int) (*Subgraph, error) {
	return g.walk(ctx, node, depth, false)
}

// batch bounds the placeholders of one IN (…) list.
const batch = 400

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

func (g *Graph) walk(ctx context.Context, arg string, depth int, upstream bool) (*Subgraph, error) {
	cands := candidates(arg)
	for i, c := range cands {
		sg, err := g.walkFrom(ctx, c, depth, upstream)
		if err != nil || len(sg.Links) > 0 || i == len(cands)-1 {
			return sg, err
		}
	}
	panic("unreachable")
}

func (g *Graph) walkFrom(ctx context.Context, root string, depth int, upstream bool) (*Subgraph, error) {
	if _, _, err := SplitNode(root); err != nil {
		return nil, err
	}
	if depth <= 0 {
		depth = DefaultDepth
	}
	dir, near := "downstream", "up"
	if upstream {
		dir, near = "upstream", "down"
	}
	sg := &Subgraph{Root: root, Direction: dir, Depth: depth, Nodes: []NodeInfo{{ID: root, Type: NodeType(root)}}}
	seen := map[string]bool{root: true}
	type lk struct{ typ, up, down string }
	links := map[lk]*Link{}
	var order []lk
	frontier := []string{root}
	for d := 1; d <= depth && len(frontier) > 0 && !sg.Truncated; d++ {
		var next []string
		for i := 0; i < len(frontier); i += batch {
			chunk := frontier[i:min(i+batch, len(frontier))]
			q := `SELECT kind, up, down, at, outcome FROM lineage_edges WHERE ` + near + ` IN (?` + strings.Repeat(`, ?`, len(chunk)-1) + `)`
			args := make([]any, len(chunk))
			for j, n := range chunk {
				args[j] = n
			}
			rows, err := g.db.QueryContext(ctx, g.db.Rebind(q), args...)
			if err != nil {
				return nil, fmt.Errorf("walk %s of %s: %w", dir, root, err)
			}
			for rows.Next() {
				var k lk
				var at int64
				var outcome string
				if err := rows.Scan(&k.typ, &k.up, &k.down, &at, &outcome); err != nil {
					rows.Close()
					return nil, fmt.Errorf("walk %s of %s: %w", dir, root, err)
				}
				t := time.UnixMicro(at).UTC()
				if l := links[k]; l != nil {
					l.Count++
					if t.Before(l.First) {
						l.First = t
					}
					if !t.Before(l.Last) {
						l.Last, l.Outcome = t, outcome
					}
				} else {
					from, to := fromUpDown(k.typ, k.up, k.down)
					links[k] = &Link{Type: k.typ, From: from, To: to, First: t, Last: t, Count: 1, Outcome: outcome}
					order = append(order, k)
				}
				other := k.down
				if upstream {
					other = k.up
				}
				if !seen[other] {
					if len(seen) >= MaxNodes {
						sg.Truncated = true
						continue
					}
					seen[other] = true
					next = append(next, other)
					sg.Nodes = append(sg.Nodes, NodeInfo{ID: other, Type: NodeType(other), Depth: d})
				}
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, fmt.Errorf("walk %s of %s: %w", dir, root, err)
			}
		}
		frontier = next
	}
	sg.Links = make([]Link, 0, len(order))
	for _, k := range order {
		l := links[k]
		if l.Type != EdgeDeployedTo {
			l.Outcome = ""
		}
		sg.Links = append(sg.Links, *l)
	}
	return sg, nil
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
func (g *Graph) At(ctx context.Context, target string, t time.Time) ([]Active, error) {
	node := targetNode(target)
	rels, err := g.targetReleases(ctx, node)
	if err != nil {
		return nil, err
	}
	var out []Active
	for _, rel := range rels {
		a, err := g.activeOn(ctx, node, rel, t)
		if err != nil {
			return nil, err
		}
		if a == nil {
			continue
		}
		if err := g.enrich(ctx, a, t); err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, nil
}

func targetNode(target string) string {
	if NodeType(target) == NodeTarget {
		return target
	}
	return Node(NodeTarget, target)
}

func (g *Graph) targetReleases(ctx context.Context, node string) ([]string, error) {
	rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT rel FROM lineage_target_releases WHERE target = ? ORDER BY rel`), node)
	if err != nil {
		return nil, fmt.Errorf("releases of %s: %w", node, err)
	}
	defer rows.Close()
	var rels []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, fmt.Errorf("releases of %s: %w", node, err)
		}
		rels = append(rels, r)
	}
	return rels, rows.Err()
}

// activeOn finds the deployment of release active on target at t, walking
// the deployment events backwards from t: the latest start that did not
// fail and was not ended since by an explicit end event.
func (g *Graph) activeOn(ctx context.Context, target, rel string, t time.Time) (*Active, error) {
	at := micro(t).UnixMicro()
	for limit := 32; ; limit *= 16 {
		rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT up, at, phase, outcome, attrs FROM lineage_edges WHERE kind = 'deployedTo' AND down = ? AND rel = ? AND at <= ? ORDER BY at DESC, id DESC LIMIT ?`), target, rel, at, limit)
		if err != nil {
			return nil, fmt.Errorf("deployments of %s: %w", target, err)
		}
		n := 0
		ended := map[string]bool{}
		decided := map[string]bool{}
		var found *Active
		for rows.Next() {
			n++
			var model, phase, outcome, attrs string
			var when int64
			if err := rows.Scan(&model, &when, &phase, &outcome, &attrs); err != nil {
				rows.Close()
				return nil, fmt.Errorf("deployments of %s: %w", target, err)
			}
			if phase == PhaseEnd {
				ended[model] = true
				continue
			}
			key := fmt.Sprintf("%s@%d", model, when)
			if decided[key] {
				continue // an older outcome of a start already decided
			}
			decided[key] = true
			if outcome == OutcomeFailed || ended[model] {
				continue
			}
			_, digest, _ := strings.Cut(model, ":")
			found = &Active{Target: strings.TrimPrefix(target, NodeTarget+":"), Release: rel, Model: digest, Since: time.UnixMicro(when).UTC(), Outcome: outcome}
			if attrs != "" {
				var a struct {
					Rollout string `json:"rollout"`
				}
				if json.Unmarshal([]byte(attrs), &a) == nil {
					found.Rollout = a.Rollout
				}
			}
			break
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("deployments of %s: %w", target, err)
		}
		if found != nil || n < limit {
			return found, nil
		}
	}
}

// enrich fills in the commit the release was admitted at, the commit the
// model was packaged from and the datasets it was trained on, as known at t.
func (g *Graph) enrich(ctx context.Context, a *Active, t time.Time) error {
	model := Node(NodeModel, a.Model)
	at := micro(t).UnixMicro()
	if a.Release != "" {
		var attrs string
		err := g.db.QueryRowContext(ctx, g.db.Rebind(`SELECT attrs FROM lineage_edges WHERE down = ? AND kind = 'declaredIn' AND up = ? AND at <= ? ORDER BY at DESC LIMIT 1`), model, Node(NodeRelease, a.Release), at).Scan(&attrs)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("admission of %s: %w", model, err)
		}
		var v struct {
			Commit string `json:"commit"`
		}
		if attrs != "" && json.Unmarshal([]byte(attrs), &v) == nil {
			a.Commit = v.Commit
		}
	}
	rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT kind, up FROM lineage_edges WHERE down = ? AND kind IN ('trainedOn', 'packagedFrom') AND at <= ?`), model, at)
	if err != nil {
		return fmt.Errorf("sources of %s: %w", model, err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var kind, up string
		if err := rows.Scan(&kind, &up); err != nil {
			return fmt.Errorf("sources of %s: %w", model, err)
		}
		switch {
		case kind == EdgePackagedFrom:
			a.Source = strings.TrimPrefix(up, NodeCommit+":")
		case !seen[up]:
			seen[up] = true
			a.Datasets = append(a.Datasets, up)
		}
	}
	sort.Strings(a.Datasets)
	return rows.Err()
}

// Where lists the targets running, at t (now when nil), a model that is
// node or derives from it (following trainedOn and packagedFrom edges
// downstream): node is a model or dataset node, or a bare
// digest (looked up as both).
func (g *Graph) Where(ctx context.Context, node string, t *time.Time) ([]Active, error) {
	when := g.now()
	if t != nil {
		when = *t
	}
	at := micro(when).UnixMicro()
	roots := candidates(node)
	for _, r := range roots {
		if _, _, err := SplitNode(r); err != nil {
			return nil, err
		}
	}
	// Models derived from the roots, following derivedKinds downstream.
	models := map[string]bool{}
	seen := map[string]bool{}
	frontier := roots
	for _, r := range roots {
		seen[r] = true
		if NodeType(r) == NodeModel {
			models[r] = true
		}
	}
	for d := 0; d < MaxNodes && len(frontier) > 0; d++ {
		var next []string
		for _, n := range frontier {
			rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT DISTINCT down FROM lineage_edges WHERE up = ? AND kind IN ('trainedOn', 'packagedFrom') AND at <= ?`), n, at)
			if err != nil {
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
			for rows.Next() {
				var down string
				if err := rows.Scan(&down); err != nil {
					rows.Close()
					return nil, fmt.Errorf("where %s: %w", node, err)
				}
				if !seen[down] {
					seen[down] = true
					next = append(next, down)
					if NodeType(down) == NodeModel {
						models[down] = true
					}
				}
			}
			err = rows.Err()
			rows.Close()
			if err != nil {
				return nil, fmt.Errorf("where %s: %w", node, err)
			}
		}
		frontier = next
	}
	// Targets those models were ever deployed to by t, then which still run them.
	type tr struct{ target, rel string }
	var cands []tr
	candSeen := map[tr]bool{}
	for _, m := range sortedKeys(models) {
		rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT DISTINCT down, rel FROM lineage_edges WHERE up = ? AND kind = 'deployedTo' AND at <= ?`), m, at)
		if err != nil {
			return nil, fmt.Errorf("where %s: deployments of %s: %w", node, m, err)
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
	var out []Active
	for _, c := range cands {
		a, err := g.activeOn(ctx, c.target, c.rel, when)
		if err != nil {
			return nil, err
		}
		if a == nil || !models[Node(NodeModel, a.Model)] {
			continue
		}
		if err := g.enrich(ctx, a, when); err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Target != out[j].Target {
			return out[i].Target < out[j].Target
		}
		return out[i].Release < out[j].Release
	})
	return out, nil
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
func (g *Graph) Steps(ctx context.Context, after int64, limit int) ([]Step, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := g.db.QueryContext(ctx, g.db.Rebind(`SELECT seq, id, run_id, kind, at, facts FROM lineage_steps WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
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
