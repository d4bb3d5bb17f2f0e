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
	"fmt"
	"net/url"
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

// BeginWrite begins a write transaction and, when ctx carries a Fence, runs
// it first; a failing fence rolls the transaction back and returns its error.
func (db *DB) BeginWrite(ctx context.Context) (*sql.Tx, error) {
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
	return tx, nil
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
