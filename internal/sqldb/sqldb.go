// Package sqldb opens cairn's SQL databases (SQLite through modernc.org/sqlite,
// PostgreSQL through pgx) behind database/sql, rewrites placeholders for the
// dialect and applies versioned migrations. The state store and the lineage
// graph both keep their tables in the database it opens.
package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Dialect is the SQL flavour of a database.
type Dialect string

// Supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a database handle that knows its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
}

// Open opens url: "postgres://…" or "postgresql://…" for PostgreSQL,
// "sqlite:///path/to/file.db", "file:…" or a plain path for SQLite (WAL mode,
// busy timeout, foreign keys on).
func Open(ctx context.Context, url string) (*DB, error) {
	var db *DB
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		sqldb, err := sql.Open("pgx", url)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		sqldb.SetMaxOpenConns(20)
		db = &DB{DB: sqldb, Dialect: Postgres}
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite://"), "file:")
		if err := createPrivate(path); err != nil {
			return nil, err
		}
		dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		sqldb, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, fmt.Errorf("open sqlite %s: %w", path, err)
		}
		db = &DB{DB: sqldb, Dialect: SQLite}
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect %s database: %w", db.Dialect, err)
	}
	return db, nil
}

// createPrivate creates a missing SQLite database file with mode 0600
// before SQLite opens it: SQLite gives the -wal and -shm files the mode of
// the database, so none of the three is readable by others whatever the
// umask. An existing file keeps its mode; ":memory:" and URIs with
// parameters are left to SQLite.
func createPrivate(path string) error {
	if path == "" || strings.HasPrefix(path, ":memory:") || strings.ContainsAny(path, "?#") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create sqlite %s: %w", path, err)
	}
	return f.Close()
}

// Rebind rewrites ? placeholders as $1, $2, … for PostgreSQL. Question marks
// inside single-quoted literals are left alone.
func (db *DB) Rebind(query string) string {
	if db.Dialect != Postgres {
		return query
	}
	var b strings.Builder
	n, quoted := 0, false
	for _, r := range query {
		switch {
		case r == '\'':
			quoted = !quoted
		case r == '?' && !quoted:
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Migration is one schema step, in both dialects where they differ.
type Migration struct {
	SQLite   string
	Postgres string // when empty, SQLite's text is used
}

// Migrate applies the migrations of component that have not run yet, each in
// its own transaction, recording them in cairn_migrations.
func (db *DB) Migrate(ctx context.Context, component string, steps []Migration) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS cairn_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("create migrations table: %w", err)
	}
	if db.Dialect == Postgres {
		// Serialise concurrent replicas migrating the same database.
		if _, err := db.ExecContext(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		defer db.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(727274)`)
	}
	for i, m := range steps {
		version := i + 1
		var done int
		if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM cairn_migrations WHERE component = ? AND version = ?`), component, version).Scan(&done); err != nil {
			return fmt.Errorf("read migrations of %s: %w", component, err)
		}
		if done > 0 {
			continue
		}
		stmt := m.SQLite
		if db.Dialect == Postgres && m.Postgres != "" {
			stmt = m.Postgres
		}
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migrate %s to %d: %w", component, version, err)
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate %s to %d: %w", component, version, err)
		}
		if _, err := tx.ExecContext(ctx, db.Rebind(`INSERT INTO cairn_migrations (component, version) VALUES (?, ?)`), component, version); err != nil {
			tx.Rollback()
			return fmt.Errorf("record migration %s %d: %w", component, version, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate %s to %d: %w", component, version, err)
		}
	}
	return nil
}

// Fence is run at the start of every write transaction begun by BeginWrite
// with a context carrying it: the state store's leader lease uses it to
// refuse the writes of a leader that lost its lease (a fencing token).
type Fence func(ctx context.Context, tx *sql.Tx) error

type fenceKey struct{}

// WithFence returns ctx carrying f for BeginWrite.
func WithFence(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// Tx is a write transaction begun by BeginWrite: a transaction of its own,
// or, when ctx carries a unit of the same database (InTx), a savepoint of
// the unit's transaction, which Commit releases and Rollback undoes while
// the unit goes on (it commits or rolls back with the unit).
type Tx struct {
	*sql.Tx
	u         *unit  // the unit joined; nil: a transaction of its own
	savepoint string // in u
	done      bool
	after     []func()
}

// unit is the transaction InTx runs its function in.
type unit struct {
	db    *DB
	tx    *sql.Tx
	n     int // savepoints taken
	after []func()
}

type unitKey struct{}

func unitOf(ctx context.Context, db *DB) *unit {
	if u, ok := ctx.Value(unitKey{}).(*unit); ok && u.db == db {
		return u
	}
	return nil
}

// Commit commits the transaction, or releases the savepoint in a unit.
func (t *Tx) Commit() error {
	if t.u == nil {
		if err := t.Tx.Commit(); err != nil {
			return err
		}
		for _, f := range t.after {
			f()
		}
		return nil
	}
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	if _, err := t.Tx.Exec(`RELEASE SAVEPOINT ` + t.savepoint); err != nil {
		return err
	}
	t.u.after = append(t.u.after, t.after...)
	return nil
}

// Rollback rolls the transaction back, or the unit back to the savepoint;
// after Commit it does nothing.
func (t *Tx) Rollback() error {
	if t.u == nil {
		return t.Tx.Rollback()
	}
	if t.done {
		return sql.ErrTxDone
	}
	t.done = true
	_, err := t.Tx.Exec(`ROLLBACK TO SAVEPOINT ` + t.savepoint)
	if err == nil {
		_, err = t.Tx.Exec(`RELEASE SAVEPOINT ` + t.savepoint)
	}
	return err
}

// AfterCommit runs f once what t wrote is committed: after Commit, or in a
// unit after the unit commits (never when it rolls back), so caches learn
// only what the database keeps.
func (t *Tx) AfterCommit(f func()) { t.after = append(t.after, f) }

// BeginWrite begins a write transaction and, when ctx carries a Fence, runs
// it first; a failing fence rolls the transaction back and returns its
// error. Inside a unit of db (InTx) it joins the unit's transaction, whose
// fence was checked when it began, as a savepoint.
func (db *DB) BeginWrite(ctx context.Context) (*Tx, error) {
	if u := unitOf(ctx, db); u != nil {
		u.n++
		sp := "cairn_sp" + strconv.Itoa(u.n)
		if _, err := u.tx.ExecContext(ctx, `SAVEPOINT `+sp); err != nil {
			return nil, err
		}
		return &Tx{Tx: u.tx, u: u, savepoint: sp}, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if f, ok := ctx.Value(fenceKey{}).(Fence); ok && f != nil {
		if err := f(ctx, tx); err != nil {
			tx.Rollback()
			return nil, err
		}
	}
	return &Tx{Tx: tx}, nil
}

// InTx runs fn in one write transaction, a unit: every write made with
// fn's ctx on db — through BeginWrite or ExecContext, by whichever package
// keeps its tables in db — commits together when fn returns nil, and none
// does otherwise. A fence in ctx is checked once, at the start, inside the
// unit's transaction (on PostgreSQL the lock it takes lasts until the end).
// Inside a unit of db, InTx just runs fn. fn's ctx must not be used by
// other goroutines, nor after fn returns.
func (db *DB) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if unitOf(ctx, db) != nil {
		return fn(ctx)
	}
	t, err := db.BeginWrite(ctx)
	if err != nil {
		return err
	}
	defer t.Rollback()
	u := &unit{db: db, tx: t.Tx}
	if err := fn(context.WithValue(ctx, unitKey{}, u)); err != nil {
		return err
	}
	if err := t.Tx.Commit(); err != nil {
		return err
	}
	for _, f := range u.after {
		f()
	}
	return nil
}

// ExecContext runs a statement: in the unit's transaction when ctx carries
// a unit of db (InTx), so a plain write joins it (and, failing, fails it);
// otherwise on its own.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if u := unitOf(ctx, db); u != nil {
		return u.tx.ExecContext(ctx, query, args...)
	}
	return db.DB.ExecContext(ctx, query, args...)
}

// CreateDatabase creates an empty PostgreSQL database named
// prefix_<random> on the server of serverURL and returns its URL and a
// function that drops it (for tests and benchmarks that want a fresh one).
func CreateDatabase(ctx context.Context, serverURL, prefix string) (dbURL string, drop func() error, err error) {
	admin, err := Open(ctx, serverURL)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		admin.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	u.Path = "/" + name
	return u.String(), func() error {
		defer admin.Close()
		_, err := admin.ExecContext(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
		return err
	}, nil
}
