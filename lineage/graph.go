package lineage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
)

// Graph is the lineage graph kept in a state database.
type Graph struct {
	db  *sqldb.DB
	now func() time.Time

	mu    sync.Mutex
	ids   map[string]int64 // node ids, which never change once committed
	names map[int64]string
	stmts map[string]*sql.Stmt // prepared queries, by text

	index      *memIndex     // nil until loaded (or when disabled): queries use SQL
	indexReady chan struct{} // closed when the load ended; nil when disabled

	// maxStale is how old the index's last check against the database may
	// be for a query to answer from it without one (see current); writes
	// counts the edge commits of every Graph on db in this process.
	maxStale time.Duration
	writes   *atomic.Uint64
	fresh    freshness
}

// freshness is what the last checks of the index against the database
// established: every edge committed before checked is in the index, and so
// is every edge whose commit in this process was counted in writes by then.
type freshness struct {
	mu      sync.Mutex
	checked time.Time // when the latest check that brought the index up to date began
	writes  uint64    // Graph.writes as it began
	busy    bool      // a background check is running
}

// dbWrites holds, per *sqldb.DB, the count of edge commits made through
// any Graph on it in this process, so that every Graph on the database sees
// the edges another recorded (read-your-writes) without asking it.
var dbWrites sync.Map // *sqldb.DB → *atomic.Uint64

// DefaultMaxStaleness is how long after its commit an edge recorded by
// another process (another replica, or another handle on the database) may
// take to show in the answers of a Graph with the in-memory index.
const DefaultMaxStaleness = 100 * time.Millisecond

// Option configures Open.
type Option func(*options)

type options struct {
	noIndex  bool
	maxStale time.Duration
}

// WithMaxStaleness sets how old the index's last check against the
// database may be for a query to answer from the index without a database
// round trip (DefaultMaxStaleness by default): edges committed by another
// process show in answers at most d after their commit. 0 makes every query
// check first (one SELECT, no transaction), so it sees every edge committed
// before it began. Edges recorded in this process through a Graph on the
// same *sqldb.DB are seen by every query that begins after their Record
// returned, whatever d.
func WithMaxStaleness(d time.Duration) Option { return func(o *options) { o.maxStale = max(0, d) } }

// WithoutMemoryIndex answers every query from SQL: no in-memory index is
// built (tests compare the two; a tool that opens the graph for one query
// has no use for it).
func WithoutMemoryIndex() Option { return func(o *options) { o.noIndex = true } }

// maxCachedIDs bounds the node id cache; it starts over when full.
const maxCachedIDs = 1 << 20

// migrations create the lineage tables:
//
//   - lineage_nodes: every node name ("model:sha256:…") once, with a small
//     integer id the edges refer to, so edges and their indexes stay small.
//   - lineage_edges: every appended edge, with its upstream (up) and
//     downstream (down) node so that walks in either direction are one
//     indexed lookup per level. The unique key (up, kind, at, down, phase,
//     outcome, rel) makes replays insert nothing and, as it starts with up
//     and holds what a walk reads, serves downstream walks without touching
//     the table; lineage_edges_down does the same for upstream walks and
//     lineage_edges_deploy finds the latest deployment of a target.
//   - lineage_target_releases: the releases ever deployed to a target, so
//     that At looks up the latest deployment of each with one indexed query.
//   - lineage_steps: the recorded steps (push, admission, deployment,
//     rollback) with their facts, exported as OpenLineage RunEvents; the id is
//     a UUIDv5 of the facts, unique, so replays are idempotent too.
var migrations = []sqldb.Migration{{
	SQLite:   schema("INTEGER PRIMARY KEY"),
	Postgres: schema("BIGSERIAL PRIMARY KEY"),
}, {
	// Admissions of a commit already admitted are recognised by their run.
	SQLite: `CREATE INDEX lineage_steps_run ON lineage_steps (run_id)`,
}}

func schema(serial string) string {
	return `
CREATE TABLE lineage_nodes (
	id   ` + serial + `,
	name TEXT NOT NULL UNIQUE
);
CREATE TABLE lineage_edges (
	id      ` + serial + `,
	kind    TEXT NOT NULL,
	up      BIGINT NOT NULL,
	down    BIGINT NOT NULL,
	at      BIGINT NOT NULL,
	phase   TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL DEFAULT '',
	rel     TEXT NOT NULL DEFAULT '',
	step    TEXT NOT NULL DEFAULT '',
	attrs   TEXT NOT NULL DEFAULT '',
	CONSTRAINT lineage_edges_key UNIQUE (up, kind, at, down, phase, outcome, rel)
);
CREATE INDEX lineage_edges_down ON lineage_edges (down, kind, at, up, outcome);
CREATE INDEX lineage_edges_deploy ON lineage_edges (down, rel, at) WHERE kind = 'deployedTo';
CREATE TABLE lineage_target_releases (
	target BIGINT NOT NULL,
	rel    TEXT NOT NULL,
	PRIMARY KEY (target, rel)
);
CREATE TABLE lineage_steps (
	seq    ` + serial + `,
	id     TEXT NOT NULL UNIQUE,
	run_id TEXT NOT NULL,
	kind   TEXT NOT NULL,
	at     BIGINT NOT NULL,
	facts  TEXT NOT NULL
);
CREATE INDEX lineage_steps_at ON lineage_steps (at);
`
}

// Open migrates the lineage tables of db (component "lineage") and returns
// the graph. db stays owned by the caller. Unless WithoutMemoryIndex is
// given, it starts loading the in-memory index the queries read once it is
// there (see WaitIndex).
func Open(ctx context.Context, db *sqldb.DB, opts ...Option) (*Graph, error) {
	o := options{maxStale: DefaultMaxStaleness}
	for _, opt := range opts {
		opt(&o)
	}
	if err := db.Migrate(ctx, "lineage", migrations); err != nil {
		return nil, fmt.Errorf("open lineage graph: %w", err)
	}
	w, _ := dbWrites.LoadOrStore(db, new(atomic.Uint64))
	g := &Graph{db: db, now: time.Now, ids: map[string]int64{}, names: map[int64]string{}, stmts: map[string]*sql.Stmt{},
		maxStale: o.maxStale, writes: w.(*atomic.Uint64)}
	if !o.noIndex {
		g.indexReady = make(chan struct{})
		go g.loadIndex(context.WithoutCancel(ctx))
	}
	return g, nil
}

// Record appends edges in one transaction. An edge already recorded (same
// type, nodes, time, phase, outcome and release) is left as it is, so
// replaying a step adds nothing. Edges recorded this way are graph-only; the
// typed recorders (RecordPush, …) also keep the step for OpenLineage export.
func (g *Graph) Record(ctx context.Context, edges ...Edge) error {
	return g.record(ctx, nil, edges)
}

// step is a recorded step: the unit exported as an OpenLineage RunEvent.
type step struct {
	ID    string
	RunID string
	Kind  string
	Time  time.Time
	Facts []byte
}

func (g *Graph) record(ctx context.Context, st *step, edges []Edge) error {
	for _, e := range edges {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("record lineage: %w", err)
		}
	}
	tx, err := g.db.BeginWrite(ctx) // a leader's fenced context refuses a deposed leader's edges
	if err != nil {
		return fmt.Errorf("record lineage: begin: %w", err)
	}
	defer tx.Rollback()
	stepID := ""
	if st != nil {
		stepID = st.ID
		if _, err := tx.ExecContext(ctx, g.db.Rebind(`INSERT INTO lineage_steps (id, run_id, kind, at, facts) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
			st.ID, st.RunID, st.Kind, micro(st.Time).UnixMicro(), string(st.Facts)); err != nil {
			return fmt.Errorf("record lineage step %s %s: %w", st.Kind, st.ID, err)
		}
	}
	ids, err := g.insertEdges(ctx, tx.Tx, stepID, edges)
	if err != nil {
		return err
	}
	// Node ids are cached once committed: inside a reconcile step's unit
	// (sqldb.InTx), when the step commits. Then the next query of every
	// Graph on db catches its index up before answering.
	tx.AfterCommit(func() { g.cache(ids); g.writes.Add(1) })
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record lineage: commit: %w", err)
	}
	return nil
}

// cache remembers committed node ids.
func (g *Graph) cache(ids map[string]int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.ids)+len(ids) > maxCachedIDs {
		g.ids, g.names = map[string]int64{}, map[int64]string{}
	}
	for n, id := range ids {
		g.ids[n] = id
		g.names[id] = n
	}
}

// stmt returns the prepared statement of query (written with ? placeholders),
// preparing it once: parsing is most of the cost of a small SQLite query.
func (g *Graph) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	g.mu.Lock()
	s := g.stmts[query]
	g.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, err := g.db.PrepareContext(ctx, g.db.Rebind(query))
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if old := g.stmts[query]; old != nil {
		s.Close()
		return old, nil
	}
	g.stmts[query] = s
	return s, nil
}

// reader runs the queries of one answer in one read-only transaction: one
// snapshot, and on SQLite one WAL read lock instead of one per statement.
// The transaction begins with the first SQL statement, so an answer the
// index gives alone (with node ids cached) makes no round trip at all.
type reader struct {
	*Graph
	tx     *sql.Tx // nil until the first statement
	stmts  map[string]*sql.Stmt
	mem    *memIndex // the index, brought up to date for this answer; see memory
	noMem  bool
	strict bool // the index is caught up with the transaction, however recently checked
}

// read runs fn with a reader whose answers follow the index's freshness
// bound (WithMaxStaleness).
func (g *Graph) read(ctx context.Context, fn func(r *reader) error) error {
	r := &reader{Graph: g, stmts: map[string]*sql.Stmt{}}
	defer r.end()
	return fn(r)
}

// readStrict runs fn with a reader that sees every edge committed before it
// began, as a check before a write must.
func (g *Graph) readStrict(ctx context.Context, fn func(r *reader) error) error {
	r := &reader{Graph: g, stmts: map[string]*sql.Stmt{}, strict: true}
	defer r.end()
	return fn(r)
}

// begin returns the reader's transaction, beginning it on first use.
func (r *reader) begin(ctx context.Context) (*sql.Tx, error) {
	if r.tx == nil {
		tx, err := r.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			return nil, fmt.Errorf("lineage query: begin: %w", err)
		}
		r.tx = tx
	}
	return r.tx, nil
}

func (r *reader) end() {
	if r.tx != nil {
		r.tx.Rollback()
	}
}

func (r *reader) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if s := r.stmts[query]; s != nil {
		return s, nil
	}
	s, err := r.Graph.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	tx, err := r.begin(ctx)
	if err != nil {
		return nil, err
	}
	s = tx.StmtContext(ctx, s)
	r.stmts[query] = s
	return s, nil
}

func (r *reader) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := r.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (r *reader) queryRow(ctx context.Context, dest []any, query string, args ...any) error {
	s, err := r.stmt(ctx, query)
	if err != nil {
		return err
	}
	return s.QueryRowContext(ctx, args...).Scan(dest...)
}

// insertEdges inserts edges and returns the ids of their nodes.
func (g *Graph) insertEdges(ctx context.Context, tx *sql.Tx, stepID string, edges []Edge) (map[string]int64, error) {
	if len(edges) == 0 {
		return nil, nil
	}
	names := make([]string, 0, 2*len(edges))
	for _, e := range edges {
		names = append(names, e.From, e.To)
	}
	ids, err := g.nodeIDs(ctx, tx, names)
	if err != nil {
		return nil, err
	}
	ins, err := tx.PrepareContext(ctx, g.db.Rebind(`INSERT INTO lineage_edges (kind, up, down, at, phase, outcome, rel, step, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`))
	if err != nil {
		return nil, fmt.Errorf("record lineage: prepare: %w", err)
	}
	defer ins.Close()
	var rel *sql.Stmt
	seen := map[[2]any]bool{}
	for _, e := range edges {
		up, down := e.updown()
		at := micro(e.Time).UnixMicro()
		phase := e.Phase
		if e.Type == EdgeDeployedTo && phase == "" {
			phase = PhaseStart
		}
		attrs := ""
		if len(e.Attrs) > 0 {
			b, err := json.Marshal(e.Attrs)
			if err != nil {
				return nil, fmt.Errorf("record lineage: %s edge %s → %s: encode attributes: %w", e.Type, e.From, e.To, err)
			}
			attrs = string(b)
		}
		if _, err := ins.ExecContext(ctx, e.Type, ids[up], ids[down], at, phase, e.Outcome, e.Release, stepID, attrs); err != nil {
			return nil, fmt.Errorf("record lineage: %s edge %s → %s: %w", e.Type, e.From, e.To, err)
		}
		if k := [2]any{ids[down], e.Release}; e.Type == EdgeDeployedTo && !seen[k] {
			seen[k] = true
			if rel == nil {
				rel, err = tx.PrepareContext(ctx, g.db.Rebind(`INSERT INTO lineage_target_releases (target, rel) VALUES (?, ?) ON CONFLICT DO NOTHING`))
				if err != nil {
					return nil, fmt.Errorf("record lineage: prepare: %w", err)
				}
				defer rel.Close()
			}
			if _, err := rel.ExecContext(ctx, ids[down], e.Release); err != nil {
				return nil, fmt.Errorf("record lineage: target %s release %q: %w", down, e.Release, err)
			}
		}
	}
	return ids, nil
}

// nodeIDs returns the ids of names, adding the nodes that are new.
func (g *Graph) nodeIDs(ctx context.Context, tx *sql.Tx, names []string) (map[string]int64, error) {
	ids := make(map[string]int64, len(names))
	var missing []string
	g.mu.Lock()
	for _, n := range names {
		if _, ok := ids[n]; ok {
			continue
		}
		if id, ok := g.ids[n]; ok {
			ids[n] = id
		} else {
			ids[n] = 0
			missing = append(missing, n)
		}
	}
	g.mu.Unlock()
	if len(missing) == 0 {
		return ids, nil
	}
	sel, err := tx.PrepareContext(ctx, g.db.Rebind(`SELECT id FROM lineage_nodes WHERE name = ?`))
	if err != nil {
		return nil, fmt.Errorf("record lineage: prepare: %w", err)
	}
	defer sel.Close()
	ins, err := tx.PrepareContext(ctx, g.db.Rebind(`INSERT INTO lineage_nodes (name) VALUES (?) ON CONFLICT DO NOTHING`))
	if err != nil {
		return nil, fmt.Errorf("record lineage: prepare: %w", err)
	}
	defer ins.Close()
	for _, n := range missing {
		var id int64
		err := sel.QueryRowContext(ctx, n).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			if _, err = ins.ExecContext(ctx, n); err == nil {
				err = sel.QueryRowContext(ctx, n).Scan(&id)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("record lineage: node %s: %w", n, err)
		}
		ids[n] = id
	}
	return ids, nil
}
