package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
)

// ErrFenced is returned by a write made under a lease (Fenced) that another
// replica has taken since: the write is refused, nothing of it is stored.
var ErrFenced = errors.New("leader lease lost: write refused")

// DefaultLeaseTTL is how long a lease lives without renewal.
const DefaultLeaseTTL = 10 * time.Second

// Lease is this process's view of the leader lease after Lead.
type Lease struct {
	// Held reports whether this process holds the lease.
	Held bool
	// Holder is the process holding it ("" when none ever did) and Term the
	// fencing term, which grows by one at every change of holder.
	Holder string
	Term   int64
	// Until is when the lease ends unless renewed, on this process's
	// monotonic clock, measured from before the renewal was asked for: a
	// process frozen past it cannot know whether it still leads.
	Until time.Time
}

// Valid reports whether the lease is held and not yet past Until.
func (l Lease) Valid() bool { return l.Held && time.Now().Before(l.Until) }

// Option configures Open.
type Option func(*SQL)

// WithLeaseTTL sets how long the leader lease lives without renewal
// (DefaultLeaseTTL); renew it at least three times as often.
func WithLeaseTTL(d time.Duration) Option {
	return func(s *SQL) {
		if d > 0 {
			s.ttl = d
		}
	}
}

// WithHolder names this process in the lease (default host:pid:random).
func WithHolder(id string) Option {
	return func(s *SQL) {
		if id != "" {
			s.holder = id
		}
	}
}

func defaultHolder() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b)
}

// now reads the database's clock (PostgreSQL), so that replicas on hosts
// whose clocks differ agree on when a lease expires; SQLite is one host's.
func (s *SQL) dbNow(ctx context.Context, tx *sql.Tx) (int64, error) {
	if s.db.Dialect != sqldb.Postgres {
		return time.Now().UnixNano(), nil
	}
	var n int64
	err := tx.QueryRowContext(ctx, `SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT * 1000`).Scan(&n)
	return n, err
}

// Lead takes or renews the leader lease and returns it. The holder renews
// its lease while it holds it; another process takes it once it expired
// (PostgreSQL) or at once (SQLite, one process's database: a restarted
// server need not wait for its predecessor's lease). Each change of holder
// increments the term, so the writes of the previous holder made through
// Fenced are refused from then on.
//
// On PostgreSQL a renewal must not wait for the holder's own writes: a
// pass committing a whole fleet's desired states keeps its fenced
// transaction (and the lock on the lease row) open for longer than the
// lease lives. Fenced takes a key-share lock, which a renewal (a no-key
// update of expires) does not wait for and a takeover (FOR UPDATE) does;
// a process not holding the lease reads it without locking first and locks
// it only when it expired, so followers polling the lease do not queue in
// front of the holder's renewal. The lease is read and written on a
// connection of its own, so a pool busy with the fleet's requests does
// not hold the renewal up either.
func (s *SQL) Lead(ctx context.Context) (Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	asked := time.Now()
	pg := s.db.Dialect == sqldb.Postgres
	if pg && s.term == 0 {
		// Not the holder: no lock unless the lease is free to take.
		var holder string
		var term int64
		var free bool
		err := s.leaseQuery(ctx, func(c *sql.Conn) error {
			return c.QueryRowContext(ctx, `SELECT holder, term, expires <= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT * 1000 FROM leader_lease WHERE id = 1`).Scan(&holder, &term, &free)
		})
		if err != nil {
			return Lease{}, fmt.Errorf("leader lease: read: %w", err)
		}
		if !free {
			return Lease{Holder: holder, Term: term}, nil
		}
	}
	var l Lease
	err := s.leaseQuery(ctx, func(c *sql.Conn) error {
		var err error
		l, err = s.lead(ctx, c, asked)
		return err
	})
	return l, err
}

// leaseQuery runs f on the lease's own connection (PostgreSQL), taken from
// the pool once and kept; one that failed is given back (the pool drops it
// when broken) and another is taken next time. SQLite uses the pool.
func (s *SQL) leaseQuery(ctx context.Context, f func(c *sql.Conn) error) error {
	if s.leaseConn == nil {
		c, err := s.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("leader lease: connection: %w", err)
		}
		s.leaseConn = c
	}
	err := f(s.leaseConn)
	if err != nil || s.db.Dialect != sqldb.Postgres {
		s.leaseConn.Close()
		s.leaseConn = nil
	}
	return err
}

func (s *SQL) lead(ctx context.Context, c *sql.Conn, asked time.Time) (Lease, error) {
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return Lease{}, fmt.Errorf("leader lease: %w", err)
	}
	defer tx.Rollback()
	pg := s.db.Dialect == sqldb.Postgres
	if pg {
		if err := pgLimits(ctx, tx, true); err != nil {
			return Lease{}, err
		}
	}
	var holder string
	var term, expires int64
	read := func(lock string) error {
		if err := tx.QueryRowContext(ctx, `SELECT holder, term, expires FROM leader_lease WHERE id = 1`+lock).Scan(&holder, &term, &expires); err != nil {
			return fmt.Errorf("leader lease: read: %w", err)
		}
		return nil
	}
	lock := ""
	if pg {
		// The holder renews under a lock its own fenced writes allow.
		lock = " FOR UPDATE"
		if s.term > 0 {
			lock = " FOR NO KEY UPDATE"
		}
	}
	if err := read(lock); err != nil {
		return Lease{}, err
	}
	mine := holder == s.holder && term == s.term && term > 0
	if pg && !mine && lock != " FOR UPDATE" {
		// Taken over since: a takeover waits for fenced writes.
		if err := read(" FOR UPDATE"); err != nil {
			return Lease{}, err
		}
		mine = holder == s.holder && term == s.term && term > 0
	}
	now, err := s.dbNow(ctx, tx)
	if err != nil {
		return Lease{}, fmt.Errorf("leader lease: clock: %w", err)
	}
	free := expires <= now || !pg
	if !mine && !free {
		s.term = 0
		return Lease{Holder: holder, Term: term}, nil
	}
	if mine {
		// Only expires changes: a no-key update, which the key-share lock
		// of the holder's open fenced writes does not block.
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE leader_lease SET expires = ? WHERE id = 1`), now+s.ttl.Nanoseconds()); err != nil {
			return Lease{}, fmt.Errorf("leader lease: write: %w", err)
		}
	} else {
		term++
		if _, err := tx.ExecContext(ctx, s.q(`UPDATE leader_lease SET holder = ?, term = ?, expires = ? WHERE id = 1`), s.holder, term, now+s.ttl.Nanoseconds()); err != nil {
			return Lease{}, fmt.Errorf("leader lease: write: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Lease{}, fmt.Errorf("leader lease: commit: %w", err)
	}
	s.term = term
	return Lease{Held: true, Holder: s.holder, Term: term, Until: asked.Add(s.ttl)}, nil
}

// Fenced returns ctx under which every write of the store (and of lineage,
// which begins its transactions the same way) first checks, in its own
// transaction, that the lease's term is still the stored one, and fails
// with ErrFenced otherwise. PostgreSQL holds a key-share lock on the lease
// row until the write commits, so a takeover (FOR UPDATE) waits for it and
// the holder's renewal (a no-key update) does not.
func (s *SQL) Fenced(ctx context.Context, l Lease) context.Context {
	term := l.Term
	lock := ""
	if s.db.Dialect == sqldb.Postgres {
		lock = " FOR KEY SHARE"
	}
	return sqldb.WithFence(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if lock != "" {
			if err := pgLimits(ctx, tx, false); err != nil {
				return err
			}
		}
		var cur int64
		if err := tx.QueryRowContext(ctx, `SELECT term FROM leader_lease WHERE id = 1`+lock).Scan(&cur); err != nil {
			return fmt.Errorf("check leader lease: %w", err)
		}
		if cur != term {
			return fmt.Errorf("term %d, now %d: %w", term, cur, ErrFenced)
		}
		return nil
	})
}

// pgLimits bounds what a frozen process's open transaction can hold up: a
// leader stopped (SIGSTOP) inside a fenced write keeps the share lock on the
// lease row, which would block every takeover; PostgreSQL ends its session
// after 5 s idle in the transaction (the write is rolled back), and a
// takeover (or renewal) waits at most 2 s for the lock before trying again.
func pgLimits(ctx context.Context, tx *sql.Tx, lead bool) error {
	if _, err := tx.ExecContext(ctx, `SET LOCAL idle_in_transaction_session_timeout = '5s'`); err != nil {
		return fmt.Errorf("leader lease: session limits: %w", err)
	}
	if lead {
		if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
			return fmt.Errorf("leader lease: session limits: %w", err)
		}
	}
	return nil
}

// release gives the lease up (on Close), so another replica takes over at
// once instead of after the TTL.
func (s *SQL) release(ctx context.Context) {
	if s.term == 0 {
		return
	}
	s.db.ExecContext(ctx, s.q(`UPDATE leader_lease SET expires = 0 WHERE id = 1 AND holder = ? AND term = ?`), s.holder, s.term)
	s.term = 0
}
