package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

// SQL is the Store on a SQLite or PostgreSQL database opened by sqldb.
type SQL struct {
	db *sqldb.DB
	// nextRevision and newestRevision take and read the newest desired
	// revision (revisionQueries).
	nextRevision, newestRevision string

	mu     sync.Mutex // guards the lease fields
	holder string
	ttl    time.Duration
	term   int64 // of the lease this process holds, 0 when none
	// leaseConn is the connection the lease is renewed on (PostgreSQL).
	leaseConn *sql.Conn

	statuses statusBatcher
}

var _ Store = (*SQL)(nil)

func auto(db *sqldb.DB) string {
	if db.Dialect == sqldb.Postgres {
		return "id BIGSERIAL PRIMARY KEY"
	}
	return "id INTEGER PRIMARY KEY AUTOINCREMENT"
}

func migrations(db *sqldb.DB) []sqldb.Migration {
	steps := []string{
		`CREATE TABLE targets (id TEXT PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL, facts TEXT NOT NULL, cred_hash TEXT NOT NULL, enrolled_at BIGINT NOT NULL, last_seen BIGINT NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT '', updated_at BIGINT NOT NULL)`,
		`CREATE INDEX targets_updated ON targets (updated_at)`,
		`CREATE TABLE deploy_log (` + auto(db) + `, target_id TEXT NOT NULL, at BIGINT NOT NULL, release_name TEXT NOT NULL, phase TEXT NOT NULL, message TEXT NOT NULL)`,
		`CREATE INDEX deploy_log_target ON deploy_log (target_id, id)`,
		`CREATE TABLE desired (target_id TEXT PRIMARY KEY, etag TEXT NOT NULL, body TEXT NOT NULL, rev BIGINT NOT NULL)`,
		`CREATE INDEX desired_rev ON desired (rev)`,
		`CREATE TABLE releases (name TEXT PRIMARY KEY, commit_sha TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL, updated_at BIGINT NOT NULL)`,
		`CREATE TABLE events (` + auto(db) + `, at BIGINT NOT NULL, type TEXT NOT NULL, reason TEXT NOT NULL, release_name TEXT NOT NULL, target TEXT NOT NULL, commit_sha TEXT NOT NULL, message TEXT NOT NULL, targets TEXT NOT NULL)`,
		`CREATE TABLE commands (` + auto(db) + `, release_name TEXT NOT NULL, command TEXT NOT NULL, at BIGINT NOT NULL)`,
		`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`,
		`CREATE TABLE leader_lease (id INTEGER PRIMARY KEY, holder TEXT NOT NULL, term BIGINT NOT NULL, expires BIGINT NOT NULL)`,
		`INSERT INTO leader_lease (id, holder, term, expires) VALUES (1, '', 0, 0)`,
		// Device acceptance: a target's state and the credential waiting for
		// an admin; one-time pre-authorised enrollment tokens per name.
		`ALTER TABLE targets ADD COLUMN state TEXT NOT NULL DEFAULT 'accepted'`,
		`ALTER TABLE targets ADD COLUMN pending_hash TEXT NOT NULL DEFAULT ''`,
		`CREATE TABLE preauth (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL, created_at BIGINT NOT NULL)`,
		`ALTER TABLE events ADD COLUMN event_key TEXT NOT NULL DEFAULT ''`,
		`CREATE UNIQUE INDEX events_key ON events (event_key) WHERE event_key <> ''`,
		// Desired states share their bodies: a row's body is then its
		// target's head, and rest_id names the rest (PutDesired).
		`CREATE TABLE desired_bodies (` + auto(db) + `, sum TEXT NOT NULL, body TEXT NOT NULL)`,
		`CREATE UNIQUE INDEX desired_bodies_sum ON desired_bodies (sum)`,
	}
	out := make([]sqldb.Migration, len(steps))
	for i, s := range steps {
		out[i] = sqldb.Migration{SQLite: s}
	}
	// On SQLite the desired states' table is rebuilt without a rowid, so
	// that a write finds and changes a row in one b-tree, not two.
	return append(out, sqldb.Migration{
		SQLite: `CREATE TABLE desired_new (target_id TEXT PRIMARY KEY, etag TEXT NOT NULL, body TEXT NOT NULL, rev BIGINT NOT NULL, rest_id BIGINT) WITHOUT ROWID;
			INSERT INTO desired_new (target_id, etag, body, rev) SELECT target_id, etag, body, rev FROM desired;
			DROP TABLE desired;
			ALTER TABLE desired_new RENAME TO desired;
			CREATE INDEX desired_rev ON desired (rev)`,
		Postgres: `ALTER TABLE desired ADD COLUMN rest_id BIGINT`,
	},
		// Stamps (TargetStampsSince) read from the index alone, not from
		// every row a burst of reports changed.
		sqldb.Migration{SQLite: `CREATE INDEX targets_stamp ON targets (updated_at, id, state)`},
		sqldb.Migration{SQLite: `DROP INDEX targets_updated`},
		// A row in two parts keeps its head in head and an empty body, so
		// that a binary from before the shared bodies, which writes and
		// reads body alone, neither reads a head as a whole state nor has
		// its whole bodies read with a rest appended (a row with a body
		// is whole, whatever its rest_id). Rows in two parts written
		// before this are the ones naming a rest whose body is not a
		// whole JSON object (a head ends in a comma); the others were
		// rewritten whole by an older binary and lose their stale rest.
		sqldb.Migration{SQLite: `ALTER TABLE desired ADD COLUMN head TEXT NOT NULL DEFAULT ''`},
		sqldb.Migration{SQLite: `UPDATE desired SET head = body, body = '' WHERE rest_id IS NOT NULL AND body NOT LIKE '%}'`},
		sqldb.Migration{SQLite: `UPDATE desired SET rest_id = NULL WHERE body <> ''`},
		sqldb.Migration{SQLite: `INSERT INTO meta (key, value) VALUES ('` + formatKey + `', '2') ON CONFLICT (key) DO UPDATE SET value = excluded.value`},
		// Format 3: the newest revision is kept in one row, so that a
		// write takes the next without the rev index and a read finds
		// nothing new without a scan; SQLite drops that index, which a
		// write of a whole fleet spent half its time keeping (every row's
		// rev changes), and reads since a revision scan the table; a
		// row in two parts whose head is HeadOf its target and tag keeps
		// an empty head. The format is recorded first: a migration killed
		// after any later step leaves a store a binary of format 2 refuses,
		// so none writes at MAX(rev) + 1 past a counter already seeded
		// (TestFormat3MigrationKilled). Each step can run again (a store
		// migrated in part by an earlier order of these steps; SQLite needs
		// the WHERE to parse an upsert from a SELECT).
		sqldb.Migration{SQLite: `INSERT INTO meta (key, value) VALUES ('` + formatKey + `', '3') ON CONFLICT (key) DO UPDATE SET value = excluded.value`},
		sqldb.Migration{SQLite: `CREATE TABLE IF NOT EXISTS desired_revision (id INTEGER PRIMARY KEY, rev BIGINT NOT NULL)`},
		sqldb.Migration{SQLite: `INSERT INTO desired_revision (id, rev) SELECT 1, COALESCE(MAX(rev), 0) FROM desired WHERE true ON CONFLICT (id) DO UPDATE SET rev = excluded.rev WHERE excluded.rev > desired_revision.rev`},
		sqldb.Migration{SQLite: `DROP INDEX IF EXISTS desired_rev`, Postgres: `SELECT 1`},
	)
}

// formatKey is the meta key of the store's format, storeFormat when this
// binary migrated it. A binary refuses a store of a newer format than it
// knows (Open): binaries before format 2 do not check, and read rows in
// two parts as empty states (README, replicas).
const formatKey = "store_format"

// storeFormat is the newest format this binary reads and writes: 3. In 2,
// desired rows in two parts keep an empty body and their head in head; in
// 3, an empty head when it is HeadOf(target, etag), and desired_revision
// holds the newest revision, which every write moves.
const storeFormat = 3

// revisionQueries are the statements taking the next desired revision and
// reading the newest. On PostgreSQL, which keeps the index on desired.rev,
// both also look at the newest row (one index probe), so that the states
// an older leader still running writes at MAX(rev) + 1 without moving
// desired_revision (a rolling upgrade) are read, and a newer write takes a
// revision after theirs (TestOlderLeaderRevisions). SQLite has no such
// index, and one process: the counter alone.
func revisionQueries(d sqldb.Dialect) (next, newest string) {
	if d == sqldb.Postgres {
		return `UPDATE desired_revision SET rev = GREATEST(rev, (SELECT COALESCE(MAX(rev), 0) FROM desired)) + 1 WHERE id = 1 RETURNING rev`,
			`SELECT GREATEST(rev, (SELECT COALESCE(MAX(rev), 0) FROM desired)) FROM desired_revision WHERE id = 1`
	}
	return `UPDATE desired_revision SET rev = rev + 1 WHERE id = 1 RETURNING rev`, `SELECT rev FROM desired_revision WHERE id = 1`
}

// checkFormat refuses a store written in a format newer than storeFormat.
func (s *SQL) checkFormat(ctx context.Context) error {
	v, err := s.Meta(ctx, formatKey)
	if err != nil {
		return fmt.Errorf("store format: %w", err)
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return fmt.Errorf("store format %q: %w", v, err)
	}
	if n > storeFormat {
		return fmt.Errorf("store format %d is newer than this binary's (%d): upgrade it as the other replicas were", n, storeFormat)
	}
	return nil
}

// Open migrates db and returns the store on it.
func Open(ctx context.Context, db *sqldb.DB, opts ...Option) (*SQL, error) {
	if err := db.Migrate(ctx, "store", migrations(db)); err != nil {
		return nil, err
	}
	s := &SQL{db: db, holder: defaultHolder(), ttl: DefaultLeaseTTL}
	s.nextRevision, s.newestRevision = revisionQueries(db.Dialect)
	for _, o := range opts {
		o(s)
	}
	if err := s.checkFormat(ctx); err != nil {
		return nil, err
	}
	s.statuses.init(s)
	return s, nil
}

// exec runs one write statement in a transaction begun by BeginWrite, so a
// fenced context's lease is checked with it.
func (s *SQL) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tx, err := s.db.BeginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	return res, tx.Commit()
}

// DB returns the database, for components keeping their tables next to the
// store's (lineage).
func (s *SQL) DB() *sqldb.DB { return s.db }

func (s *SQL) q(query string) string { return s.db.Rebind(query) }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data types are encoded
	}
	return string(b)
}

// desiredBatch rows per multi-row upsert: 6 parameters each.
const desiredBatch = 500

// PutDesired writes ds in one transaction. A state in two parts (Head and
// Rest) keeps its rest once in desired_bodies, for every target desired
// the same, and only its head and the body's id in its own row: a new
// model for a whole fleet writes one body and a row of a few dozen bytes
// a target. Bodies no row in two parts names any more are deleted when a
// write adds one (a sweep of every row); a write of whole states only does
// not sweep, so the unused bodies it leaves, at most those there were after
// the last write that added one, stay until the next such write.
func (s *SQL) PutDesired(ctx context.Context, ds []Desired) (int64, error) {
	tx, err := s.db.BeginWrite(ctx)
	if err != nil {
		return 0, fmt.Errorf("write desired state: %w", err)
	}
	defer tx.Rollback()
	if s.db.Dialect == sqldb.Postgres {
		// One writer at a time looks bodies up, adds and deletes them
		// (SQLite has one writer anyway); reads do not wait.
		if _, err := tx.ExecContext(ctx, `LOCK TABLE desired_bodies IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return 0, fmt.Errorf("write desired state: %w", err)
		}
	}
	var rev int64
	if err := tx.QueryRowContext(ctx, s.nextRevision).Scan(&rev); err != nil {
		return 0, fmt.Errorf("write desired state: next revision: %w", err)
	}
	bodies := bodyIDs{tx: tx, s: s}
	if s.db.Dialect == sqldb.Postgres {
		err = s.upsertDesiredArrays(ctx, tx, ds, rev, &bodies)
	} else {
		err = s.upsertDesiredRows(ctx, tx, ds, rev, &bodies)
	}
	if err != nil {
		return 0, fmt.Errorf("write desired state: %w", err)
	}
	if bodies.added {
		if _, err := tx.ExecContext(ctx, `DELETE FROM desired_bodies WHERE id NOT IN (SELECT rest_id FROM desired WHERE rest_id IS NOT NULL AND body = '')`); err != nil {
			return 0, fmt.Errorf("write desired state: delete unused bodies: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("write desired state: %w", err)
	}
	return rev, nil
}

// upsertDesiredRows writes ds's rows in multi-row statements of
// desiredBatch rows, the statement of a whole batch parsed once. A batch
// whose rows are all in two parts with the head HeadOf rebuilds (a new
// model for a fleet) binds three values a row, not six.
func (s *SQL) upsertDesiredRows(ctx context.Context, tx *sqldb.Tx, ds []Desired, rev int64, bodies *bodyIDs) error {
	var stmts [2]*sql.Stmt // the statements of a whole batch, general and compact, parsed once
	defer func() {
		for _, st := range stmts {
			if st != nil {
				st.Close()
			}
		}
	}()
	revArg := any(rev)
	var lastID int64
	var idArg any
	args := make([]any, 0, 6*min(len(ds), desiredBatch))
	for start := 0; start < len(ds); start += desiredBatch {
		chunk := ds[start:min(start+desiredBatch, len(ds))]
		compact := true
		for _, d := range chunk {
			if keptWhole(d) || storedHead(d) != "" {
				compact = false
				break
			}
		}
		args = args[:0]
		for _, d := range chunk {
			if keptWhole(d) {
				args = append(args, d.Target, d.ETag, d.Text(), "", revArg, nil)
				continue
			}
			id, err := bodies.id(ctx, d.Rest)
			if err != nil {
				return err
			}
			if id != lastID || idArg == nil {
				lastID, idArg = id, any(id) // boxed once, not once a row
			}
			if compact {
				args = append(args, d.Target, d.ETag, idArg)
			} else {
				args = append(args, d.Target, d.ETag, "", storedHead(d), revArg, idArg)
			}
		}
		k, query := 0, s.upsertDesired
		if compact {
			k, query = 1, func(n int) string { return upsertDesiredCompact(rev, n) }
		}
		var err error
		if len(chunk) < desiredBatch {
			_, err = tx.ExecContext(ctx, query(len(chunk)), args...)
		} else {
			if stmts[k] == nil {
				if stmts[k], err = tx.PrepareContext(ctx, query(desiredBatch)); err != nil {
					return err
				}
			}
			_, err = stmts[k].ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// upsertDesiredCompact is the SQLite statement writing n rows in two parts
// that keep no head, at revision rev (a number this store chose, written
// into the statement): each row's target, tag and body id.
func upsertDesiredCompact(rev int64, n int) string {
	return upsertDesiredStatement("(?, ?, '', '', "+strconv.FormatInt(rev, 10)+", ?)", n)
}

// desiredArrayRows rows per statement of upsertDesiredArrays.
const desiredArrayRows = 20000

// upsertDesiredArrays writes ds's rows on PostgreSQL as columns of arrays
// unnested, a few statements (and round trips) a fleet.
func (s *SQL) upsertDesiredArrays(ctx context.Context, tx *sqldb.Tx, ds []Desired, rev int64, bodies *bodyIDs) error {
	for start := 0; start < len(ds); start += desiredArrayRows {
		chunk := ds[start:min(start+desiredArrayRows, len(ds))]
		n := len(chunk)
		targets, tags, wholes, heads := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		rests := make([]int64, n) // 0: the body is whole
		// A target twice in a statement is an error on PostgreSQL
		// ("cannot affect row a second time"): its last state is kept,
		// as SQLite's upsert, row after row, does.
		at := make(map[string]int, n)
		n = 0
		for _, d := range chunk {
			i, ok := at[d.Target]
			if !ok {
				i, at[d.Target] = n, n
				n++
			}
			targets[i], tags[i] = d.Target, d.ETag
			if keptWhole(d) {
				wholes[i], heads[i], rests[i] = d.Text(), "", 0
				continue
			}
			id, err := bodies.id(ctx, d.Rest)
			if err != nil {
				return err
			}
			wholes[i], heads[i], rests[i] = "", storedHead(d), id
		}
		targets, tags, wholes, heads, rests = targets[:n], tags[:n], wholes[:n], heads[:n], rests[:n]
		if _, err := tx.ExecContext(ctx, `INSERT INTO desired (target_id, etag, body, head, rev, rest_id)
			SELECT t, e, b, h, $5, NULLIF(r, 0) FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::bigint[]) AS u(t, e, b, h, r)
			ON CONFLICT (target_id) DO UPDATE SET etag = excluded.etag, body = excluded.body, head = excluded.head, rev = excluded.rev, rest_id = excluded.rest_id`,
			targets, tags, wholes, heads, rev, rests); err != nil {
			return err
		}
	}
	return nil
}

// keptWhole reports whether d is written as one body: a whole state, one
// with no rest, or one with no head (an empty head is kept for a head
// HeadOf rebuilds, so a row in two parts must not keep one that is empty).
func keptWhole(d Desired) bool {
	return d.Body != nil || d.Rest == "" || d.Head == ""
}

// storedHead is what a row in two parts keeps of d's head: nothing when
// it is HeadOf(d.Target, d.ETag), which a read rebuilds (readHead).
func storedHead(d Desired) string {
	if isHeadOf(d.Head, d.Target, d.ETag) {
		return ""
	}
	return d.Head
}

// readHead is the head of a row in two parts that keeps head.
func readHead(target, etag, head string) string {
	if head == "" {
		return HeadOf(target, etag)
	}
	return head
}

// upsertDesired is the statement writing n desired states' rows.
func (s *SQL) upsertDesired(n int) string {
	return s.q(upsertDesiredStatement("(?, ?, ?, ?, ?, ?)", n))
}

// upsertDesiredStatement is the upsert of n desired rows, each row's values
// as row gives them.
func upsertDesiredStatement(row string, n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO desired (target_id, etag, body, head, rev, rest_id) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	b.WriteString(` ON CONFLICT (target_id) DO UPDATE SET etag = excluded.etag, body = excluded.body, head = excluded.head, rev = excluded.rev, rest_id = excluded.rest_id`)
	return b.String()
}

// bodyIDs finds or adds the desired_bodies rows of one write's rests.
type bodyIDs struct {
	tx     *sqldb.Tx
	s      *SQL
	last   string // the rest looked up last, most often the next one too
	lastID int64
	ids    map[string]int64
	added  bool // a body was added
}

// id returns the id of the body rest, adding it when there is none.
func (b *bodyIDs) id(ctx context.Context, rest string) (int64, error) {
	if b.lastID != 0 && rest == b.last {
		return b.lastID, nil
	}
	id, ok := b.ids[rest]
	if !ok {
		h := sha256.Sum256([]byte(rest))
		sum := hex.EncodeToString(h[:])
		err := b.tx.QueryRowContext(ctx, b.s.q(`SELECT id FROM desired_bodies WHERE sum = ?`), sum).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			err = b.tx.QueryRowContext(ctx, b.s.q(`INSERT INTO desired_bodies (sum, body) VALUES (?, ?) RETURNING id`), sum, rest).Scan(&id)
			b.added = true
		}
		if err != nil {
			return 0, fmt.Errorf("body of desired state: %w", err)
		}
		if b.ids == nil {
			b.ids = map[string]int64{}
		}
		b.ids[rest] = id
	}
	b.last, b.lastID = rest, id
	return id, nil
}

// A desired row is whole when its body is not empty, whatever its rest_id
// (an older binary rewriting a row sets only etag, body and rev), and in
// two parts, head then the body rest_id names, when it is.

func (s *SQL) Desired(ctx context.Context, id string) (Desired, error) {
	d := Desired{Target: id}
	var body, head string
	var rest sql.NullString
	err := s.db.QueryRowContext(ctx, s.q(`SELECT d.etag, d.body, d.head, d.rev, b.body FROM desired d LEFT JOIN desired_bodies b ON b.id = d.rest_id AND d.body = '' WHERE d.target_id = ?`), id).Scan(&d.ETag, &body, &head, &d.Rev, &rest)
	if errors.Is(err, sql.ErrNoRows) {
		return d, fmt.Errorf("desired state of %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("read desired state of %s: %w", id, err)
	}
	if body != "" {
		d.Body = []byte(body)
	} else {
		d.Body = []byte(readHead(id, d.ETag, head) + rest.String)
	}
	return d, nil
}

func (s *SQL) DesiredSince(ctx context.Context, rev int64) ([]Desired, error) {
	var out []Desired
	err := s.EachDesiredSince(ctx, rev, func(d Desired) error {
		out = append(out, d)
		return nil
	})
	return out, err
}

// EachDesiredSince calls fn with each desired state written after revision
// rev, in no set order, as DesiredSince returns them, without holding
// them all: a fleet's states read at once are a copy of every body. A state
// written in two parts comes in two parts, its Rest one string for every
// state of this call sharing the body. The bodies and then the rows are
// read in one read-only transaction (REPEATABLE READ on PostgreSQL), one
// snapshot, so every body a row names is there however the states are
// rewritten meanwhile.
func (s *SQL) EachDesiredSince(ctx context.Context, rev int64, fn func(Desired) error) error {
	opts := &sql.TxOptions{ReadOnly: true}
	if s.db.Dialect == sqldb.Postgres {
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("read desired states: %w", err)
	}
	defer tx.Rollback()
	var newest int64
	if err := tx.QueryRowContext(ctx, s.newestRevision).Scan(&newest); err != nil {
		return fmt.Errorf("read desired states: newest revision: %w", err)
	}
	if newest <= rev {
		return nil // nothing written since: no scan
	}
	rests, err := s.restsSince(ctx, tx, rev)
	if err != nil {
		return err
	}
	rows, err := tx.QueryContext(ctx, s.q(`SELECT target_id, etag, body, head, rev, rest_id FROM desired WHERE rev > ?`), rev)
	if err != nil {
		return fmt.Errorf("read desired states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d Desired
		var body, head string
		var restID sql.NullInt64
		if err := rows.Scan(&d.Target, &d.ETag, &body, &head, &d.Rev, &restID); err != nil {
			return fmt.Errorf("read desired states: %w", err)
		}
		if body != "" || !restID.Valid {
			d.Body = []byte(body)
		} else {
			rest, ok := rests[restID.Int64]
			if !ok {
				// Bodies are deleted only once no row names them,
				// and the snapshot read both.
				return fmt.Errorf("read desired states: body %d of %s missing", restID.Int64, d.Target)
			}
			d.Head, d.Rest = readHead(d.Target, d.ETag, head), rest
		}
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read desired states: %w", err)
	}
	return nil
}

// restsSince reads the bodies the rows in two parts written after rev
// name, by id: a few for a fleet, which shares them.
func (s *SQL) restsSince(ctx context.Context, tx *sql.Tx, rev int64) (map[int64]string, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT id, body FROM desired_bodies WHERE id IN (SELECT rest_id FROM desired WHERE rev > ? AND body = '' AND rest_id IS NOT NULL)`), rev)
	if err != nil {
		return nil, fmt.Errorf("read desired states: bodies: %w", err)
	}
	defer rows.Close()
	rests := map[int64]string{}
	for rows.Next() {
		var id int64
		var body string
		if err := rows.Scan(&id, &body); err != nil {
			return nil, fmt.Errorf("read desired states: bodies: %w", err)
		}
		rests[id] = body
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read desired states: bodies: %w", err)
	}
	return rests, nil
}

func (s *SQL) PutRelease(ctx context.Context, r Release) error {
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now()
	}
	_, err := s.exec(ctx, `INSERT INTO releases (name, commit_sha, spec, state, status, updated_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET commit_sha = excluded.commit_sha, spec = excluded.spec, state = excluded.state, status = excluded.status, updated_at = excluded.updated_at`,
		r.Name, r.Commit, string(r.Spec), string(r.State), string(r.Status), nanos(r.UpdatedAt))
	if err != nil {
		return fmt.Errorf("write release %s: %w", r.Name, err)
	}
	return nil
}

const releaseCols = `name, commit_sha, spec, state, status, updated_at`

func scanRelease(sc interface{ Scan(...any) error }) (Release, error) {
	var r Release
	var spec, state, status string
	var at int64
	err := sc.Scan(&r.Name, &r.Commit, &spec, &state, &status, &at)
	r.Spec, r.State, r.Status, r.UpdatedAt = []byte(spec), []byte(state), []byte(status), fromNanos(at)
	return r, err
}

func (s *SQL) Release(ctx context.Context, name string) (Release, error) {
	r, err := scanRelease(s.db.QueryRowContext(ctx, s.q(`SELECT `+releaseCols+` FROM releases WHERE name = ?`), name))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("release %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read release %s: %w", name, err)
	}
	return r, nil
}

func (s *SQL) Releases(ctx context.Context) ([]Release, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+releaseCols+` FROM releases ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list releases: %w", err)
	}
	defer rows.Close()
	var out []Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return nil, fmt.Errorf("list releases: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *SQL) DeleteRelease(ctx context.Context, name string) error {
	if _, err := s.exec(ctx, `DELETE FROM releases WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete release %s: %w", name, err)
	}
	return nil
}

func (s *SQL) AddEvents(ctx context.Context, evs []fleet.Event) error {
	if len(evs) == 0 {
		return nil
	}
	tx, err := s.db.BeginWrite(ctx)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer tx.Rollback()
	now := time.Now().UTC()
	for i := range evs {
		e := &evs[i]
		if e.Time.IsZero() {
			e.Time = now
		}
		targets := ""
		if len(e.Targets) > 0 {
			targets = mustJSON(e.Targets)
		}
		err := tx.QueryRowContext(ctx, s.q(`INSERT INTO events (at, type, reason, release_name, target, commit_sha, message, targets, event_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (event_key) WHERE event_key <> '' DO NOTHING RETURNING id`),
			nanos(e.Time), e.Type, e.Reason, e.Release, e.Target, e.Commit, e.Message, targets, e.Key).Scan(&e.ID)
		if errors.Is(err, sql.ErrNoRows) && e.Key != "" {
			// Recorded before (a retried step): the same event, once.
			err = tx.QueryRowContext(ctx, s.q(`SELECT id FROM events WHERE event_key = ?`), e.Key).Scan(&e.ID)
		}
		if err != nil {
			return fmt.Errorf("record event %s: %w", e.Type, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}

func (s *SQL) Events(ctx context.Context, f fleet.EventFilter) ([]fleet.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	where, args := []string{"1 = 1"}, []any{}
	for _, c := range []struct{ col, v string }{{"release_name", f.Release}, {"target", f.Target}, {"type", f.Type}} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	args = append(args, f.Limit)
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, at, type, reason, release_name, target, commit_sha, message, targets FROM events WHERE `+strings.Join(where, " AND ")+` ORDER BY id DESC LIMIT ?`), args...)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []fleet.Event
	for rows.Next() {
		var e fleet.Event
		var at int64
		var targets string
		if err := rows.Scan(&e.ID, &at, &e.Type, &e.Reason, &e.Release, &e.Target, &e.Commit, &e.Message, &targets); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		e.Time = fromNanos(at)
		if targets != "" {
			json.Unmarshal([]byte(targets), &e.Targets)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (s *SQL) PushCommand(ctx context.Context, release, command string) error {
	if _, err := s.db.ExecContext(ctx, s.q(`INSERT INTO commands (release_name, command, at) VALUES (?, ?, ?)`), release, command, nanos(time.Now())); err != nil {
		return fmt.Errorf("queue %s of %s: %w", command, release, err)
	}
	return nil
}

func (s *SQL) TakeCommands(ctx context.Context) ([]Command, error) {
	tx, err := s.db.BeginWrite(ctx)
	if err != nil {
		return nil, fmt.Errorf("take commands: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, release_name, command, at FROM commands ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("take commands: %w", err)
	}
	var out []Command
	var last int64
	for rows.Next() {
		var c Command
		var at int64
		if err := rows.Scan(&last, &c.Release, &c.Command, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("take commands: %w", err)
		}
		c.ID, c.Time = last, fromNanos(at)
		out = append(out, c)
	}
	rows.Close()
	if len(out) == 0 {
		return nil, nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM commands WHERE id <= ?`), last); err != nil {
		return nil, fmt.Errorf("take commands: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("take commands: %w", err)
	}
	return out, nil
}

func (s *SQL) Commands(ctx context.Context) ([]Command, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, release_name, command, at FROM commands ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("read commands: %w", err)
	}
	defer rows.Close()
	var out []Command
	for rows.Next() {
		var c Command
		var at int64
		if err := rows.Scan(&c.ID, &c.Release, &c.Command, &at); err != nil {
			return nil, fmt.Errorf("read commands: %w", err)
		}
		c.Time = fromNanos(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (s *SQL) ConsumeCommands(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	tx, err := s.db.BeginWrite(ctx)
	if err != nil {
		return fmt.Errorf("consume commands: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM commands WHERE id = ?`), id); err != nil {
			return fmt.Errorf("consume command %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("consume commands: %w", err)
	}
	return nil
}

func (s *SQL) Atomic(ctx context.Context, fn func(ctx context.Context) error) error {
	return s.db.InTx(ctx, fn)
}

func (s *SQL) PutMeta(ctx context.Context, key string, value []byte) error {
	if _, err := s.exec(ctx, `INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, string(value)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

func (s *SQL) Meta(ctx context.Context, key string) ([]byte, error) {
	var v string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT value FROM meta WHERE key = ?`), key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return []byte(v), nil
}

// Close gives up the leader lease; the database stays open (its owner closes it).
func (s *SQL) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.release(ctx)
	if s.leaseConn != nil {
		s.leaseConn.Close()
		s.leaseConn = nil
	}
	return nil
}
