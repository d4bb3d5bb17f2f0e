package lineage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
)

// randomGraph records a random graph of models, datasets, commits, releases
// and targets with deployments, end events, failures and rollbacks, every
// edge at a distinct time (ties between edges of one pair are the one place
// where the SQL walk's answer depends on its scan order).
func randomGraph(t *testing.T, g *Graph, rng *rand.Rand, n int, base time.Time, tick *int) {
	t.Helper()
	ctx := context.Background()
	next := func() time.Time { *tick++; return base.Add(time.Duration(*tick) * time.Second) }
	model := func() string { return Node(NodeModel, fmt.Sprintf("sha256:%064x", rng.IntN(40))) }
	dataset := func() string { return Node(NodeDataset, fmt.Sprintf("sha256:d%063x", rng.IntN(12))) }
	target := func() string { return Node(NodeTarget, fmt.Sprintf("dev-%d", rng.IntN(60))) }
	release := func() string { return fmt.Sprintf("rel-%d", rng.IntN(5)) }
	var edges []Edge
	for i := 0; i < n; i++ {
		switch k := rng.IntN(10); {
		case k < 2:
			edges = append(edges, Edge{Type: EdgeTrainedOn, From: model(), To: dataset(), Time: next()})
		case k < 3:
			m := model()
			edges = append(edges,
				Edge{Type: EdgePackagedFrom, From: m, To: Node(NodeCommit, fmt.Sprintf("%040x", rng.IntN(20))), Time: next()},
				Edge{Type: EdgeDeclaredIn, From: m, To: Node(NodeRelease, release()), Time: next(), Attrs: map[string]any{"commit": fmt.Sprintf("c%d", rng.IntN(9))}})
		case k < 4:
			// a model derived from another (fine-tune), so Where walks further
			edges = append(edges, Edge{Type: EdgePackagedFrom, From: model(), To: model(), Time: next()})
		default:
			outcomes := []string{OutcomeSucceeded, OutcomeSucceeded, OutcomeFailed, OutcomeProgressing, OutcomeRolledBack}
			phase := PhaseStart
			if rng.IntN(5) == 0 {
				phase = PhaseEnd
			}
			edges = append(edges, Edge{Type: EdgeDeployedTo, From: model(), To: target(), Time: next(), Phase: phase,
				Outcome: outcomes[rng.IntN(len(outcomes))], Release: release(), Attrs: map[string]any{"rollout": fmt.Sprintf("ro-%d", rng.IntN(3))}})
		}
		if len(edges) >= 50 {
			if err := g.Record(ctx, edges...); err != nil {
				t.Fatal(err)
			}
			edges = edges[:0]
		}
	}
	if err := g.Record(ctx, edges...); err != nil {
		t.Fatal(err)
	}
}

// activeDiff describes how two answers differ: their lengths and the first
// entry that is not the same.
func activeDiff(sql, index []Active) string {
	for i := 0; i < max(len(sql), len(index)); i++ {
		var a, b *Active
		if i < len(sql) {
			a = &sql[i]
		}
		if i < len(index) {
			b = &index[i]
		}
		if a == nil || b == nil || !reflect.DeepEqual(*a, *b) {
			return fmt.Sprintf("%d entries from SQL, %d from the index; entry %d:\nsql   %+v\nindex %+v", len(sql), len(index), i, a, b)
		}
	}
	return fmt.Sprintf("%d entries each, the same", len(sql))
}

func sortedSubgraph(sg *Subgraph) *Subgraph {
	c := *sg
	c.Nodes = append([]NodeInfo(nil), sg.Nodes...)
	c.Links = append([]Link(nil), sg.Links...)
	sort.Slice(c.Nodes, func(i, j int) bool { return c.Nodes[i].ID < c.Nodes[j].ID })
	sort.Slice(c.Links, func(i, j int) bool {
		a, b := c.Links[i], c.Links[j]
		return a.Type+a.From+a.To < b.Type+b.From+b.To
	})
	return &c
}

// TestIndexMatchesSQL asks the in-memory index and the SQL queries the same
// questions over a random graph, before and after more edges are appended
// (by another handle, as another replica would).
func TestIndexMatchesSQL(t *testing.T) {
	backends(t, func(t *testing.T, sqlGraph *Graph) {
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(7, 11))
		tick := 0
		randomGraph(t, sqlGraph, rng, 1500, t0, &tick)
		mem, err := Open(ctx, sqlGraph.db)
		if err != nil {
			t.Fatal(err)
		}
		if !mem.WaitIndex(ctx) {
			t.Fatal("the in-memory index did not load")
		}
		plain, err := Open(ctx, sqlGraph.db, WithoutMemoryIndex())
		if err != nil {
			t.Fatal(err)
		}
		compare := func(round string) {
			t.Helper()
			end := t0.Add(time.Duration(tick+10) * time.Second)
			nodes := []string{}
			for i := 0; i < 40; i++ {
				nodes = append(nodes, Node(NodeModel, fmt.Sprintf("sha256:%064x", i)))
			}
			for i := 0; i < 12; i++ {
				nodes = append(nodes, Node(NodeDataset, fmt.Sprintf("sha256:d%063x", i)))
			}
			for i := 0; i < 60; i += 3 {
				nodes = append(nodes, Node(NodeTarget, fmt.Sprintf("dev-%d", i)))
			}
			nodes = append(nodes, Node(NodeRelease, "rel-1"), Node(NodeCommit, fmt.Sprintf("%040x", 3)))
			for _, n := range nodes {
				for _, up := range []bool{true, false} {
					for _, depth := range []int{2, 5} {
						want, err1 := plain.walkRead(ctx, n, depth, up)
						got, err2 := mem.walkRead(ctx, n, depth, up)
						if err1 != nil || err2 != nil {
							t.Fatalf("%s: walk %s: %v / %v", round, n, err1, err2)
						}
						if !reflect.DeepEqual(sortedSubgraph(want), sortedSubgraph(got)) {
							t.Fatalf("%s: walk %s up=%v depth %d:\nsql   %+v\nindex %+v", round, n, up, depth, sortedSubgraph(want), sortedSubgraph(got))
						}
					}
				}
			}
			// Now: answered from the live deployment index.
			for _, n := range nodes[:52] {
				want, err1 := plain.Where(ctx, n, nil)
				got, err2 := mem.Where(ctx, n, nil)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
					t.Fatalf("%s: where %s now (%v / %v): %s", round, n, err1, err2, activeDiff(want, got))
				}
			}
			for i := 0; i < 120; i++ {
				at := t0.Add(time.Duration(rng.Int64N(int64(end.Sub(t0)))))
				if i%2 == 0 {
					// at an event's time exactly: a span starts or ends there
					at = t0.Add(time.Duration(rng.IntN(tick+10)) * time.Second)
				}
				tg := fmt.Sprintf("dev-%d", rng.IntN(60))
				want, err1 := plain.At(ctx, tg, at)
				got, err2 := mem.At(ctx, tg, at)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(want, got) {
					t.Fatalf("%s: at %s %s: sql %+v (%v)\nindex %+v (%v)", round, tg, at, want, err1, got, err2)
				}
				n := nodes[rng.IntN(52)]
				wantW, err1 := plain.Where(ctx, n, &at)
				gotW, err2 := mem.Where(ctx, n, &at)
				if err1 != nil || err2 != nil || !reflect.DeepEqual(wantW, gotW) {
					t.Fatalf("%s: where %s %s (%v / %v): %s", round, n, at, err1, err2, activeDiff(wantW, gotW))
				}
			}
		}
		compare("loaded")
		checkSpans(t, mem)
		// Appended through the SQL-only handle: the index must catch up.
		randomGraph(t, plain, rng, 600, t0, &tick)
		compare("after appends")
		checkSpans(t, mem)
		// Appended in the past, between the events already there (half a
		// second after each, so still no two at one time): the history of a
		// (target, release) changes in the middle, not only at its end.
		past := 0
		randomGraph(t, plain, rng, 300, t0.Add(500*time.Millisecond), &past)
		compare("after appends in the past")
		checkSpans(t, mem)
		if st := mem.IndexStats(); !st.Loaded || st.Edges == 0 || st.Bytes == 0 {
			t.Fatalf("index stats %+v", st)
		}
	})
}

// checkSpans checks the order of every model's spans: byFrom by from,
// byTo a permutation of it by to, nothing dead or left unsettled, and each
// entry one of the spans of its (target, release).
func checkSpans(t *testing.T, g *Graph) {
	t.Helper()
	ix := g.index
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	for model, ms := range ix.spans {
		if ms.sorted != len(ms.byFrom) || ms.dead != 0 || len(ms.byTo) != len(ms.byFrom) {
			t.Fatalf("model %d: sorted %d, dead %d, %d by from, %d by to", model, ms.sorted, ms.dead, len(ms.byFrom), len(ms.byTo))
		}
		seen := map[int32]bool{}
		for i, x := range ms.byTo {
			if seen[x] || int(x) >= len(ms.byFrom) || (i > 0 && ms.byFrom[ms.byTo[i-1]].to > ms.byFrom[x].to) {
				t.Fatalf("model %d: byTo %v is not a permutation ordered by to", model, ms.byTo)
			}
			seen[x] = true
		}
		for i, e := range ms.byFrom {
			if e.dead || (i > 0 && compareFrom(ms.byFrom[i-1], e) > 0) {
				t.Fatalf("model %d: entry %d %+v dead or out of order", model, i, e)
			}
			tr := tgtRel{e.target, e.rel}
			if !slices.Contains(ix.spansOf(ix.deploys[tr]), span{model: model, from: e.from, to: e.to}) {
				t.Fatalf("model %d: entry %+v is not a span of its target", model, e)
			}
		}
	}
}

// TestIndexConcurrentQueries runs walks, At and Where on the index from
// several goroutines while another handle appends edges, for the race
// detector: each query after an append catches the index up (and past half
// the staleness bound one has it checked in the background), so they
// contend for it.
func TestIndexConcurrentQueries(t *testing.T) {
	backends(t, func(t *testing.T, sqlGraph *Graph) { testIndexConcurrentQueries(t, sqlGraph) })
}

func testIndexConcurrentQueries(t *testing.T, sqlGraph *Graph) {
	ctx := context.Background()
	tick := 0
	randomGraph(t, sqlGraph, rand.New(rand.NewPCG(1, 2)), 400, t0, &tick)
	mem, err := Open(ctx, sqlGraph.db)
	if err != nil {
		t.Fatal(err)
	}
	if !mem.WaitIndex(ctx) {
		t.Fatal("the in-memory index did not load")
	}
	done := make(chan error, 3)
	for w := 0; w < 3; w++ {
		go func(w int) {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 60; i++ {
				m := Node(NodeModel, fmt.Sprintf("sha256:%064x", rng.IntN(40)))
				d := Node(NodeDataset, fmt.Sprintf("sha256:d%063x", rng.IntN(12)))
				at := t0.Add(time.Duration(rng.IntN(tick+1)) * time.Second)
				var err error
				switch i % 4 {
				case 0:
					_, err = mem.Downstream(ctx, d, 5)
				case 1:
					_, err = mem.Upstream(ctx, m, 5)
				case 2:
					_, err = mem.Where(ctx, d, &at)
				default:
					_, err = mem.At(ctx, fmt.Sprintf("dev-%d", rng.IntN(60)), at)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					done <- err
					return
				}
			}
			done <- nil
		}(w)
	}
	appendTick := tick
	randomGraph(t, sqlGraph, rand.New(rand.NewPCG(3, 4)), 300, t0, &appendTick) // meanwhile
	for i := 0; i < 3; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// otherHandle opens the database of g a second time, as another process
// (another replica) would: a *sqldb.DB of its own, with its own
// connections, sharing nothing with g's in this process.
func otherHandle(t *testing.T, g *Graph) *sqldb.DB {
	t.Helper()
	ctx := context.Background()
	var url string
	switch g.db.Dialect {
	case sqldb.Postgres:
		var schema string
		if err := g.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			t.Fatal(err)
		}
		url = testenv.Require(t, testenv.Postgres)
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "search_path=" + schema
	default:
		var seq int
		var name string
		if err := g.db.QueryRowContext(ctx, `PRAGMA database_list`).Scan(&seq, &name, &url); err != nil {
			t.Fatal(err)
		}
	}
	db, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestIndexSeesOtherWriters checks the freshness the index promises: edges
// recorded through another Graph on the same *sqldb.DB are seen by the next
// query, whatever the staleness bound; edges recorded through another
// database handle (as by another replica) are seen once the bound has
// passed since their commit, by the next query when the bound is 0, and
// not before a check when it is long.
func TestIndexSeesOtherWriters(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		tick := 0
		randomGraph(t, g, rand.New(rand.NewPCG(5, 6)), 200, t0, &tick)
		open := func(opts ...Option) *Graph {
			t.Helper()
			m, err := Open(ctx, g.db, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !m.WaitIndex(ctx) {
				t.Fatal("the in-memory index did not load")
			}
			return m
		}
		long, strict, bounded := open(WithMaxStaleness(time.Hour)), open(WithMaxStaleness(0)), open()
		local, err := Open(ctx, g.db, WithoutMemoryIndex())
		if err != nil {
			t.Fatal(err)
		}
		remote, err := Open(ctx, otherHandle(t, g), WithoutMemoryIndex())
		if err != nil {
			t.Fatal(err)
		}
		dataset := Node(NodeDataset, fmt.Sprintf("sha256:d%063x", 3))
		// has reports whether m's answers know model: downstream of the
		// dataset, and (deployed to dev-new) where it runs and what dev-new runs.
		has := func(m *Graph, model string) (walk, where, at bool) {
			t.Helper()
			sg, err := m.Downstream(ctx, dataset, 1)
			if err != nil {
				t.Fatal(err)
			}
			walk = slices.ContainsFunc(sg.Nodes, func(n NodeInfo) bool { return n.ID == model })
			w, err := m.Where(ctx, model, nil)
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			a, err := m.At(ctx, "dev-new", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			digest := strings.TrimPrefix(model, NodeModel+":")
			return walk, len(w) == 1, slices.ContainsFunc(a, func(a Active) bool { return a.Model == digest })
		}
		n := 0
		record := func(r *Graph) string {
			t.Helper()
			n++
			model := Node(NodeModel, fmt.Sprintf("sha256:e%063x", n))
			at := t0.Add(time.Duration(tick+n) * time.Second)
			if err := r.Record(ctx,
				Edge{Type: EdgeTrainedOn, From: model, To: dataset, Time: at},
				Edge{Type: EdgeDeployedTo, From: model, To: Node(NodeTarget, "dev-new"), Time: at, Phase: PhaseStart, Outcome: OutcomeSucceeded, Release: "rel-new"}); err != nil {
				t.Fatal(err)
			}
			return model
		}
		all := func(m *Graph, model string) bool {
			walk, where, at := has(m, model)
			return walk && where && at
		}
		walks := func(m *Graph, model string) bool {
			t.Helper()
			sg, err := m.Downstream(ctx, dataset, 1)
			if err != nil {
				t.Fatal(err)
			}
			return slices.ContainsFunc(sg.Nodes, func(n NodeInfo) bool { return n.ID == model })
		}

		// This process, another Graph on the same handle: read-your-writes.
		model := record(local)
		for name, m := range map[string]*Graph{"long": long, "strict": strict, "bounded": bounded} {
			if !all(m, model) {
				t.Fatalf("%s bound: an edge recorded through another Graph on the same database handle is not seen", name)
			}
		}

		// Another handle, as another replica.
		model = record(remote)
		if !all(strict, model) {
			t.Fatal("bound 0: an edge committed by another handle before the query is not seen")
		}
		if walks(long, model) {
			t.Fatal("bound 1h: an edge committed by another handle was seen without a check (the test expects the index as last checked)")
		}
		if err := long.check(ctx, long.index); err != nil {
			t.Fatal(err)
		}
		if !all(long, model) {
			t.Fatal("bound 1h: an edge committed by another handle is not seen after a check")
		}
		// A query that reads SQL anyway (here: the id of a node this Graph
		// never saw) catches the index up with its transaction first.
		model = record(remote)
		if walks(long, model) {
			t.Fatal("bound 1h: an edge committed by another handle was seen without a check")
		}
		if _, where, _ := has(long, model); !where {
			t.Fatal("bound 1h: Where of a model looked up in SQL does not see its deployment")
		}
		if !walks(long, model) {
			t.Fatal("bound 1h: the index was not caught up by the query that read SQL")
		}
		recorded := time.Now()
		// Once the bound has passed since the commit, every answer has it:
		// answered from the index only when its last check began after it.
		time.Sleep(time.Until(recorded.Add(DefaultMaxStaleness + time.Millisecond)))
		if !walks(bounded, model) || !all(bounded, model) {
			t.Fatalf("bound %v: an edge committed by another handle is not seen %v after", DefaultMaxStaleness, time.Since(recorded))
		}
	})
}
