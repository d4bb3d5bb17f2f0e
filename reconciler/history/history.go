package history

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

// Resolutions of the stored points and how long each is kept.
const (
	Minute = time.Minute
	Hour   = time.Hour

	KeepMinutes = 48 * time.Hour
	KeepHours   = 90 * 24 * time.Hour
)

// History records reports and answers metric and uptime queries.
type History struct {
	db           *sqldb.DB
	offlineAfter time.Duration
	log          *slog.Logger
	now          func() time.Time

	flushMu sync.Mutex // one flush at a time

	mu       sync.Mutex
	points   map[pointKey]*held  // minute points
	sessions map[string]*session // by target: the current online session
	closed   []closedSession     // sessions ended before they were flushed
}

type closedSession struct {
	target string
	s      session
}

type pointKey struct {
	target string
	res    int64 // seconds
	bucket int64 // unix seconds of the bucket's start
}

// session is one span during which a target reported at most offlineAfter
// apart.
type session struct {
	start, last int64 // UnixNano
	written     int64 // UnixNano of when Run last took it to write; 0: never
	dirty       bool
	known       bool // start is merged with what the database holds
}

// maxHold is how long Run keeps what Observe gathered before writing it: a
// minute point is written once its minute has closed or it has been held
// this long (so a target's hour point, added to from its minute points as
// they are written, once a minute, not at every flush), a session's
// progress once this long after the last write. Queries and a stop flush
// everything first, so only a crash of the process loses up to this much
// history; the status reports themselves are in the store.
const maxHold = time.Minute

// Option configures History.
type Option func(*History)

// WithOfflineAfter sets how long without a report ends a session (default 3m);
// use the server's offlineAfter.
func WithOfflineAfter(d time.Duration) Option { return func(h *History) { h.offlineAfter = d } }

// WithLogger sets the logger of Run's flush errors (default: discard).
func WithLogger(l *slog.Logger) Option { return func(h *History) { h.log = l } }

// WithClock sets the clock of Prune and of "now" in uptime (tests).
func WithClock(now func() time.Time) Option { return func(h *History) { h.now = now } }

func migrations() []sqldb.Migration {
	var cols []string
	for _, s := range Series {
		cols = append(cols, s+"_n BIGINT NOT NULL DEFAULT 0", s+"_sum DOUBLE PRECISION NOT NULL DEFAULT 0",
			s+"_min DOUBLE PRECISION NOT NULL DEFAULT 0", s+"_max DOUBLE PRECISION NOT NULL DEFAULT 0")
	}
	return []sqldb.Migration{
		{SQLite: `CREATE TABLE metric_points (target TEXT NOT NULL, res BIGINT NOT NULL, bucket BIGINT NOT NULL, ` + strings.Join(cols, ", ") + `, PRIMARY KEY (target, res, bucket))`},
		{SQLite: `CREATE INDEX metric_points_age ON metric_points (res, bucket)`},
		{SQLite: `CREATE TABLE presence (target TEXT NOT NULL, start_at BIGINT NOT NULL, last_at BIGINT NOT NULL, PRIMARY KEY (target, start_at))`},
		{SQLite: `CREATE INDEX presence_last ON presence (last_at)`},
	}
}

// Open migrates db ("history" component) and returns the history kept in it.
func Open(ctx context.Context, db *sqldb.DB, opts ...Option) (*History, error) {
	if err := db.Migrate(ctx, "history", migrations()); err != nil {
		return nil, err
	}
	h := &History{db: db, offlineAfter: 3 * time.Minute, log: slog.New(slog.DiscardHandler), now: time.Now,
		points: map[pointKey]*held{}, sessions: map[string]*session{}}
	for _, o := range opts {
		o(h)
	}
	return h, nil
}

// Observe records a status report of target received at. It only touches
// memory; Flush (run by Run every few seconds) writes it.
func (h *History) Observe(target string, rep fleet.StatusReport, at time.Time) {
	s := sampleOf(rep)
	at = at.UTC()
	h.mu.Lock()
	defer h.mu.Unlock()
	// Only the minute point is held: the hour point is written from the
	// minute points as they are (write), which adds up the same.
	k := pointKey{target, 60, at.Unix() / 60 * 60}
	a := h.points[k]
	if a == nil {
		a = &held{since: at.Unix()}
		h.points[k] = a
	}
	a.add(s)
	cur := h.sessions[target]
	ns := at.UnixNano()
	switch {
	case cur == nil:
		h.sessions[target] = &session{start: ns, last: ns, dirty: true}
	case ns-cur.last > int64(h.offlineAfter):
		if cur.dirty {
			h.closed = append(h.closed, closedSession{target, *cur})
		}
		*cur = session{start: ns, last: ns, dirty: true, known: true}
	case ns > cur.last:
		cur.last, cur.dirty = ns, true
	}
}

// Run flushes every interval and prunes old points every ten minutes until
// ctx ends, then flushes once more.
func (h *History) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := h.Flush(fctx); err != nil {
				h.log.Warn("flush metrics history", "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
		if err := h.flush(ctx, h.now()); err != nil && ctx.Err() == nil {
			h.log.Warn("flush metrics history", "err", err)
		}
		if time.Since(lastPrune) > 10*time.Minute {
			if err := h.Prune(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn("prune metrics history", "err", err)
			}
			lastPrune = time.Now()
		}
	}
}

// Flush writes what Observe gathered since the last flush in one transaction.
func (h *History) Flush(ctx context.Context) error { return h.flush(ctx, time.Time{}) }

// flush writes what is due at now (see maxHold), or everything when now is
// zero, in one transaction.
func (h *History) flush(ctx context.Context, now time.Time) error {
	h.flushMu.Lock()
	defer h.flushMu.Unlock()
	h.mu.Lock()
	points := h.points
	if now.IsZero() {
		h.points = map[pointKey]*held{}
	} else {
		points = map[pointKey]*held{}
		due := now.Add(-maxHold).Unix()
		for k, a := range h.points {
			if k.bucket+k.res <= now.Unix() || a.since <= due {
				points[k] = a
				delete(h.points, k)
			}
		}
	}
	closed := h.closed
	h.closed = nil
	var dirty []closedSession
	var taken int64 // as written: 0 for a flush of everything
	if !now.IsZero() {
		taken = now.UnixNano()
	}
	for id, s := range h.sessions {
		if s.dirty && (taken == 0 || taken-s.written >= int64(maxHold)) {
			dirty = append(dirty, closedSession{id, *s})
			s.dirty, s.written = false, taken
		}
	}
	h.mu.Unlock()
	if len(points) == 0 && len(dirty) == 0 && len(closed) == 0 {
		return nil
	}
	err := h.write(ctx, points, func(tx *sql.Tx) error {
		all := append(append([]closedSession(nil), closed...), dirty...)
		starts, err := h.joinStored(ctx, tx, all)
		if err != nil {
			return err
		}
		for i, d := range dirty {
			if start := starts[len(closed)+i]; start != d.s.start {
				h.mu.Lock()
				if cur := h.sessions[d.target]; cur != nil && cur.start == d.s.start {
					cur.start = start
				}
				h.mu.Unlock()
			}
		}
		return h.upsertSessions(ctx, tx, all, starts)
	})
	if err != nil {
		h.keepUnwritten(points, closed, dirty)
		return err
	}
	h.mu.Lock()
	for _, d := range dirty {
		if cur := h.sessions[d.target]; cur != nil {
			cur.known = true
		}
	}
	h.mu.Unlock()
	return nil
}

// keepUnwritten puts back what a failed flush did not write, for the next.
func (h *History) keepUnwritten(points map[pointKey]*held, closed, dirty []closedSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, a := range points {
		if cur := h.points[k]; cur != nil {
			cur.merge(a)
		} else {
			h.points[k] = a
		}
	}
	h.closed = append(closed, h.closed...)
	for _, d := range dirty {
		if cur := h.sessions[d.target]; cur != nil && cur.start == d.s.start {
			cur.dirty, cur.written = true, 0
		} else {
			h.closed = append(h.closed, d)
		}
	}
}

func (h *History) write(ctx context.Context, points map[pointKey]*held, more func(*sql.Tx) error) error {
	tx, err := h.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("flush metrics history: %w", err)
	}
	defer tx.Rollback()
	if len(points) > 0 {
		// The minute points, then the hour points made of them: one a
		// target and hour (minute points of one hour are adjacent once
		// sorted), added to the stored hour as the minutes are.
		keys := make([]pointKey, 0, len(points))
		for k := range points {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b pointKey) int {
			return cmp.Or(strings.Compare(a.target, b.target), cmp.Compare(a.bucket, b.bucket))
		})
		w := pointWriter{ctx: ctx, tx: tx, db: h.db, args: make([]any, 0, pointChunk*(3+4*nSeries))}
		for _, k := range keys {
			a := points[k].agg()
			w.add(k, &a)
		}
		var hour pointKey
		var sum agg
		for i, k := range keys {
			a := points[k].agg()
			sum.merge(&a)
			hour = pointKey{k.target, 3600, k.bucket / 3600 * 3600}
			if i+1 == len(keys) || keys[i+1].target != k.target || keys[i+1].bucket/3600*3600 != hour.bucket {
				w.add(hour, &sum)
				sum = agg{}
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
	}
	if err := more(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("flush metrics history: %w", err)
	}
	return nil
}

// pointChunk bounds the points of one multi-row upsert (35 parameters
// each).
const pointChunk = 256

// pointWriter adds points to the stored ones, pointChunk to a statement;
// the points of one chunk must have distinct keys.
type pointWriter struct {
	ctx  context.Context
	tx   *sql.Tx
	db   *sqldb.DB
	args []any
	n    int
	err  error
}

func (w *pointWriter) add(k pointKey, a *agg) {
	w.args = append(w.args, k.target, k.res, k.bucket)
	for i := range nSeries {
		w.args = append(w.args, a.n[i], a.sum[i], a.min[i], a.max[i])
	}
	if w.n++; w.n == pointChunk {
		w.flush()
	}
}

// flush writes the points added since the last flush; it returns the
// first error of any.
func (w *pointWriter) flush() error {
	if w.n > 0 && w.err == nil {
		if _, err := w.tx.ExecContext(w.ctx, w.db.Rebind(upsertPoints(w.n)), w.args...); err != nil {
			w.err = fmt.Errorf("flush metrics of %d targets: %w", w.n, err)
		}
	}
	w.args, w.n = w.args[:0], 0
	return w.err
}

// upsertPoints adds n buckets' aggregates to the stored ones in one
// statement (a flush writes one row per target and resolution; the keys of
// one statement are distinct).
func upsertPoints(n int) string {
	cols := []string{"target", "res", "bucket"}
	var sets []string
	for _, s := range Series {
		cols = append(cols, s+"_n", s+"_sum", s+"_min", s+"_max")
		p, e := "metric_points.", "excluded."
		sets = append(sets,
			fmt.Sprintf("%[1]s_n = %[2]s%[1]s_n + %[3]s%[1]s_n", s, p, e),
			fmt.Sprintf("%[1]s_sum = %[2]s%[1]s_sum + %[3]s%[1]s_sum", s, p, e),
			fmt.Sprintf("%[1]s_min = CASE WHEN %[3]s%[1]s_n = 0 THEN %[2]s%[1]s_min WHEN %[2]s%[1]s_n = 0 OR %[3]s%[1]s_min < %[2]s%[1]s_min THEN %[3]s%[1]s_min ELSE %[2]s%[1]s_min END", s, p, e),
			fmt.Sprintf("%[1]s_max = CASE WHEN %[3]s%[1]s_n = 0 THEN %[2]s%[1]s_max WHEN %[2]s%[1]s_n = 0 OR %[3]s%[1]s_max > %[2]s%[1]s_max THEN %[3]s%[1]s_max ELSE %[2]s%[1]s_max END", s, p, e))
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	return `INSERT INTO metric_points (` + strings.Join(cols, ", ") + `) VALUES ` + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ") +
		` ON CONFLICT (target, res, bucket) DO UPDATE SET ` + strings.Join(sets, ", ")
}

// sessionChunk bounds the sessions of one presence query or upsert.
const sessionChunk = 500

// joinStored returns each session's start: the start of the newest stored
// session of its target when that one ended less than offlineAfter before
// it began (a restart of the server, or another replica), else its own.
// Only sessions not yet merged (not known) are looked up, in one query per
// chunk, not one a target.
func (h *History) joinStored(ctx context.Context, tx *sql.Tx, ss []closedSession) ([]int64, error) {
	starts := make([]int64, len(ss))
	var unknown []int
	for i, c := range ss {
		starts[i] = c.s.start
		if !c.s.known {
			unknown = append(unknown, i)
		}
	}
	for len(unknown) > 0 {
		chunk := unknown[:min(len(unknown), sessionChunk)]
		unknown = unknown[len(chunk):]
		// Sessions of a target do not overlap: the newest one starting
		// before a session that can join it ended within offlineAfter of
		// the earliest start asked about.
		earliest := ss[chunk[0]].s.start
		args := make([]any, 0, len(chunk)+1)
		for _, i := range chunk {
			args = append(args, ss[i].target)
			earliest = min(earliest, ss[i].s.start)
		}
		args = append(args, earliest-int64(h.offlineAfter))
		rows, err := tx.QueryContext(ctx, h.db.Rebind(`SELECT target, start_at, last_at FROM presence WHERE target IN (?`+strings.Repeat(", ?", len(chunk)-1)+`) AND last_at >= ?`), args...)
		if err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		type span struct{ start, last int64 }
		stored := map[string][]span{}
		for rows.Next() {
			var t string
			var sp span
			if err := rows.Scan(&t, &sp.start, &sp.last); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read presence: %w", err)
			}
			stored[t] = append(stored[t], sp)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		for _, i := range chunk {
			c := ss[i]
			var newest *span
			for k, sp := range stored[c.target] {
				if sp.start <= c.s.start && (newest == nil || sp.start > newest.start) {
					newest = &stored[c.target][k]
				}
			}
			if newest != nil && c.s.start-newest.last <= int64(h.offlineAfter) {
				starts[i] = newest.start
			}
		}
	}
	return starts, nil
}

// upsertSessions stores each session of ss from starts[i] to its last
// report, in multi-row upserts (a stored session keeps the later end); two
// of one target and start are written as one.
func (h *History) upsertSessions(ctx context.Context, tx *sql.Tx, ss []closedSession, starts []int64) error {
	type key struct {
		target string
		start  int64
	}
	last := map[key]int64{}
	var keys []key
	for i, c := range ss {
		k := key{c.target, starts[i]}
		l, seen := last[k]
		if !seen {
			keys = append(keys, k)
		}
		last[k] = max(l, c.s.last)
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), sessionChunk)]
		keys = keys[len(chunk):]
		args := make([]any, 0, 3*len(chunk))
		for _, k := range chunk {
			args = append(args, k.target, k.start, last[k])
		}
		q := `INSERT INTO presence (target, start_at, last_at) VALUES (?, ?, ?)` + strings.Repeat(", (?, ?, ?)", len(chunk)-1) + `
			ON CONFLICT (target, start_at) DO UPDATE SET last_at = CASE WHEN excluded.last_at > presence.last_at THEN excluded.last_at ELSE presence.last_at END`
		if _, err := tx.ExecContext(ctx, h.db.Rebind(q), args...); err != nil {
			return fmt.Errorf("record presence of %d targets: %w", len(chunk), err)
		}
	}
	return nil
}

// Prune deletes 1-minute points older than 48 hours, 1-hour points and
// sessions older than 90 days: what a target keeps is bounded by time, not
// by how often it reports.
func (h *History) Prune(ctx context.Context) error {
	now := h.now()
	for _, q := range []struct {
		sql string
		arg int64
	}{
		{`DELETE FROM metric_points WHERE res = 60 AND bucket < ?`, now.Add(-KeepMinutes).Unix()},
		{`DELETE FROM metric_points WHERE res = 3600 AND bucket < ?`, now.Add(-KeepHours).Unix()},
		{`DELETE FROM presence WHERE last_at < ?`, now.Add(-KeepHours).UnixNano()},
	} {
		if _, err := h.db.ExecContext(ctx, h.db.Rebind(q.sql), q.arg); err != nil {
			return fmt.Errorf("prune history: %w", err)
		}
	}
	return nil
}
