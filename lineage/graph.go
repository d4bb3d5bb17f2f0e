package lineage

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
)

// Graph is the lineage graph kept in a state database.
type Graph struct {
	db  *sqldb.DB
	now func() time.Time
}

// migrations create the lineage tables:
//
//   - lineage_edges: every appended edge, with its upstream (up) and
//     downstream (down) node so that walks in either direction are one
//     indexed lookup per level; ekey, a hash of (type, up, down, time, phase,
//     outcome, release), is unique so replaying a step inserts nothing.
//   - lineage_target_releases: the releases ever deployed to a target, so
//     that At looks up the latest deployment of each with one indexed query.
//   - lineage_steps: the recorded steps (push, admission, deployment,
//     rollback) with their facts, exported as OpenLineage RunEvents; the id is
//     a UUIDv5 of the facts, unique, so replays are idempotent too.
var migrations = []sqldb.Migration{{
	SQLite: `
CREATE TABLE lineage_edges (
	id      INTEGER PRIMARY KEY,
	ekey    TEXT NOT NULL UNIQUE,
	kind    TEXT NOT NULL,
	up      TEXT NOT NULL,
	down    TEXT NOT NULL,
	at      BIGINT NOT NULL,
	phase   TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL DEFAULT '',
	rel     TEXT NOT NULL DEFAULT '',
	step    TEXT NOT NULL DEFAULT '',
	attrs   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX lineage_edges_up ON lineage_edges (up, kind, at);
CREATE INDEX lineage_edges_down ON lineage_edges (down, kind, at);
CREATE INDEX lineage_edges_deploy ON lineage_edges (down, rel, at) WHERE kind = 'deployedTo';
CREATE TABLE lineage_target_releases (
	target TEXT NOT NULL,
	rel    TEXT NOT NULL,
	PRIMARY KEY (target, rel)
);
CREATE TABLE lineage_steps (
	seq    INTEGER PRIMARY KEY,
	id     TEXT NOT NULL UNIQUE,
	run_id TEXT NOT NULL,
	kind   TEXT NOT NULL,
	at     BIGINT NOT NULL,
	facts  TEXT NOT NULL
);
CREATE INDEX lineage_steps_at ON lineage_steps (at);
`,
	Postgres: `
CREATE TABLE lineage_edges (
	id      BIGSERIAL PRIMARY KEY,
	ekey    TEXT NOT NULL UNIQUE,
	kind    TEXT NOT NULL,
	up      TEXT NOT NULL,
	down    TEXT NOT NULL,
	at      BIGINT NOT NULL,
	phase   TEXT NOT NULL DEFAULT '',
	outcome TEXT NOT NULL DEFAULT '',
	rel     TEXT NOT NULL DEFAULT '',
	step    TEXT NOT NULL DEFAULT '',
	attrs   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX lineage_edges_up ON lineage_edges (up, kind, at);
CREATE INDEX lineage_edges_down ON lineage_edges (down, kind, at);
CREATE INDEX lineage_edges_deploy ON lineage_edges (down, rel, at) WHERE kind = 'deployedTo';
CREATE TABLE lineage_target_releases (
	target TEXT NOT NULL,
	rel    TEXT NOT NULL,
	PRIMARY KEY (target, rel)
);
CREATE TABLE lineage_steps (
	seq    BIGSERIAL PRIMARY KEY,
	id     TEXT NOT NULL UNIQUE,
	run_id TEXT NOT NULL,
	kind   TEXT NOT NULL,
	at     BIGINT NOT NULL,
	facts  TEXT NOT NULL
);
CREATE INDEX lineage_steps_at ON lineage_steps (at);
`,
}}

// Open migrates the lineage tables of db (component "lineage") and returns
// the graph. db stays owned by the caller.
func Open(ctx context.Context, db *sqldb.DB) (*Graph, error) {
	if err := db.Migrate(ctx, "lineage", migrations); err != nil {
		return nil, fmt.Errorf("open lineage graph: %w", err)
	}
	return &Graph{db: db, now: time.Now}, nil
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
	tx, err := g.db.BeginTx(ctx, nil)
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
	if err := g.insertEdges(ctx, tx, stepID, edges); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record lineage: commit: %w", err)
	}
	return nil
}

func (g *Graph) insertEdges(ctx context.Context, tx *sql.Tx, stepID string, edges []Edge) error {
	if len(edges) == 0 {
		return nil
	}
	ins, err := tx.PrepareContext(ctx, g.db.Rebind(`INSERT INTO lineage_edges (ekey, kind, up, down, at, phase, outcome, rel, step, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ekey) DO NOTHING`))
	if err != nil {
		return fmt.Errorf("record lineage: prepare: %w", err)
	}
	defer ins.Close()
	var rel *sql.Stmt
	seen := map[[2]string]bool{}
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
				return fmt.Errorf("record lineage: %s edge %s → %s: encode attributes: %w", e.Type, e.From, e.To, err)
			}
			attrs = string(b)
		}
		key := edgeKey(e.Type, up, down, at, phase, e.Outcome, e.Release)
		if _, err := ins.ExecContext(ctx, key, e.Type, up, down, at, phase, e.Outcome, e.Release, stepID, attrs); err != nil {
			return fmt.Errorf("record lineage: %s edge %s → %s: %w", e.Type, e.From, e.To, err)
		}
		if e.Type == EdgeDeployedTo && !seen[[2]string{down, e.Release}] {
			seen[[2]string{down, e.Release}] = true
			if rel == nil {
				rel, err = tx.PrepareContext(ctx, g.db.Rebind(`INSERT INTO lineage_target_releases (target, rel) VALUES (?, ?) ON CONFLICT (target, rel) DO NOTHING`))
				if err != nil {
					return fmt.Errorf("record lineage: prepare: %w", err)
				}
				defer rel.Close()
			}
			if _, err := rel.ExecContext(ctx, down, e.Release); err != nil {
				return fmt.Errorf("record lineage: target %s release %q: %w", down, e.Release, err)
			}
		}
	}
	return nil
}

// edgeKey is the identity of an edge: what makes a replay a duplicate.
func edgeKey(kind, up, down string, at int64, phase, outcome, rel string) string {
	h := sha256.New()
	for _, s := range []string{kind, up, down, strconv.FormatInt(at, 10), phase, outcome, rel} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
