package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

// maxStatusBatch bounds the reports written in one transaction.
const maxStatusBatch = 512

// Under a stream of reports the next batch waits up to statusLinger for
// statusLingerFor reports before it is written.
const (
	statusLinger    = 2 * time.Millisecond
	statusLingerFor = 32
)

// statusBatcher writes status reports in group commits: a report waits for
// the transaction that writes it, and while one transaction commits, the
// reports that arrive meanwhile gather into the next. A lone report is
// written at once; while reports keep coming, each batch after the first
// waits up to statusLinger for more (a SQLite commit without fsync takes
// about as long as a few reports' updates, so without a wait under load
// batches stayed at 2–3 reports). A caller returns only once its report is
// committed, so a report the server acknowledged survives a crash.
type statusBatcher struct {
	s       *SQL
	mu      sync.Mutex
	queue   []*statusWrite
	running bool
	full    chan struct{} // closed when the queue reaches statusLingerFor while run waits
	stmts   [2]*sql.Stmt  // SQLite status updates, without and with facts (stmt)
}

type statusWrite struct {
	ctx context.Context
	id  string
	at  time.Time
	// status and facts are the report's columns, encoded by the caller so
	// that the one writer does not (facts "" when the report has none);
	// logs are its deploy log entries.
	status, facts string
	logs          []fleet.LogEntry
	done          chan error
}

func (b *statusBatcher) init(s *SQL) { b.s = s }

// PutStatus records a status report received at: last seen, the report,
// the facts it carries and its deploy log entries. Concurrent calls share
// transactions (see statusBatcher).
func (s *SQL) PutStatus(ctx context.Context, id string, r fleet.StatusReport, at time.Time) error {
	w := &statusWrite{ctx: ctx, id: id, at: at, logs: r.Log, done: make(chan error, 1)}
	r.Log = nil
	w.status = mustJSON(r)
	if r.Facts != nil {
		w.facts = mustJSON(*r.Facts)
	}
	s.statuses.mu.Lock()
	s.statuses.queue = append(s.statuses.queue, w)
	if s.statuses.full != nil && len(s.statuses.queue) >= statusLingerFor {
		close(s.statuses.full)
		s.statuses.full = nil
	}
	if !s.statuses.running {
		s.statuses.running = true
		go s.statuses.run()
	}
	s.statuses.mu.Unlock()
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		// The report may still be written; the agent reports again anyway.
		return fmt.Errorf("record status of %s: %w", id, ctx.Err())
	}
}

// run writes batches until the queue is empty.
func (b *statusBatcher) run() {
	var linger *time.Timer
	for first := true; ; first = false {
		b.mu.Lock()
		if !first && len(b.queue) > 0 && len(b.queue) < statusLingerFor {
			full := make(chan struct{})
			b.full = full
			b.mu.Unlock()
			if linger == nil {
				linger = time.NewTimer(statusLinger)
			} else {
				linger.Reset(statusLinger)
			}
			select {
			case <-full:
				linger.Stop()
			case <-linger.C:
			}
			b.mu.Lock()
			b.full = nil
		}
		n := min(len(b.queue), maxStatusBatch)
		if n == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		batch := b.queue[:n:n]
		b.queue = append([]*statusWrite(nil), b.queue[n:]...)
		b.mu.Unlock()
		b.write(batch)
	}
}

// write commits batch in one transaction. A report of a target that is not
// enrolled fails alone; any other error fails the batch, and then each
// report is retried in a transaction of its own so that one bad report does
// not fail the others.
func (b *statusBatcher) write(batch []*statusWrite) {
	live := batch[:0:0]
	for _, w := range batch {
		if w.ctx.Err() != nil {
			w.done <- fmt.Errorf("record status of %s: %w", w.id, w.ctx.Err())
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return
	}
	errs, err := b.commit(live)
	if err != nil && len(live) > 1 {
		for _, w := range live {
			one, err := b.commit([]*statusWrite{w})
			if err != nil {
				w.done <- err
			} else {
				w.done <- one[0]
			}
		}
		return
	}
	for i, w := range live {
		if err != nil {
			w.done <- err
		} else {
			w.done <- errs[i]
		}
	}
}

// commit writes batch in one transaction and returns each report's own
// outcome (nil, or ErrNotFound for a target that is not enrolled), or the
// error that failed the transaction. The targets' rows are set without
// parsing a statement per report (updateStatuses): of several
// reports of one target in the batch, the one received last is stored (the
// others are acknowledged as superseded by it, their log entries kept).
func (b *statusBatcher) commit(batch []*statusWrite) ([]error, error) {
	ctx := context.WithoutCancel(batch[0].ctx)
	tx, err := b.s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("record status of %d targets: %w", len(batch), err)
	}
	defer tx.Rollback()
	last := make(map[string]*statusWrite, len(batch))
	var plain, withFacts []*statusWrite
	for _, w := range batch {
		if o := last[w.id]; o == nil || !w.at.Before(o.at) {
			last[w.id] = w
		}
	}
	for _, w := range batch {
		switch {
		case last[w.id] != w:
		case w.facts == "":
			plain = append(plain, w)
		default:
			withFacts = append(withFacts, w)
		}
	}
	updated, err := b.s.updateStatuses(ctx, tx, plain, false)
	if err != nil {
		return nil, err
	}
	n, err := b.s.updateStatuses(ctx, tx, withFacts, true)
	if err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	if updated+n < int64(len(last)) {
		if missing, err = b.s.missingTargets(ctx, tx, last); err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(batch))
	for i, w := range batch {
		if missing[w.id] {
			errs[i] = fmt.Errorf("record status of %s: %w", w.id, ErrNotFound)
			continue
		}
		if err := b.s.putLog(ctx, tx, w.id, w.logs, w.at); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("record status of %d targets: %w", len(batch), err)
	}
	return errs, nil
}

// statusChunk bounds the rows of one PostgreSQL UPDATE.
const statusChunk = 512

// Status updates of the batcher, without and with facts: on SQLite one
// prepared statement run per target (no parsing, no round trip), on
// PostgreSQL one statement per chunk over arrays (one round trip; its text
// does not change with the number of rows, so pgx's statement cache keeps
// it prepared).
const (
	updateStatusSQLite      = `UPDATE targets SET last_seen = ?, updated_at = ?, status = ? WHERE id = ?`
	updateStatusFactsSQLite = `UPDATE targets SET last_seen = ?, updated_at = ?, status = ?, facts = ? WHERE id = ?`
	updateStatusPG          = `UPDATE targets SET last_seen = v.at, updated_at = v.at, status = v.status FROM unnest($1::text[], $2::bigint[], $3::text[]) AS v(id, at, status) WHERE targets.id = v.id`
	updateStatusFactsPG     = `UPDATE targets SET last_seen = v.at, updated_at = v.at, status = v.status, facts = v.facts FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS v(id, at, status, facts) WHERE targets.id = v.id`
)

// updateStatuses sets last seen, status (and facts) of the targets of ws,
// one target each, and returns how many rows it updated: fewer than ws when
// some are not enrolled.
func (s *SQL) updateStatuses(ctx context.Context, tx *sql.Tx, ws []*statusWrite, facts bool) (int64, error) {
	if len(ws) == 0 {
		return 0, nil
	}
	var updated int64
	if s.db.Dialect != sqldb.Postgres {
		stmt, err := s.statuses.stmt(ctx, facts)
		if err != nil {
			return 0, err
		}
		stmt = tx.StmtContext(ctx, stmt)
		defer stmt.Close()
		for _, w := range ws {
			args := []any{nanos(w.at), nanos(w.at), w.status, w.id}
			if facts {
				args = []any{nanos(w.at), nanos(w.at), w.status, w.facts, w.id}
			}
			res, err := stmt.ExecContext(ctx, args...)
			if err != nil {
				return 0, fmt.Errorf("record status of %s: %w", w.id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return 0, fmt.Errorf("record status of %s: %w", w.id, err)
			}
			updated += n
		}
		return updated, nil
	}
	q := updateStatusPG
	if facts {
		q = updateStatusFactsPG
	}
	for len(ws) > 0 {
		chunk := ws[:min(len(ws), statusChunk)]
		ws = ws[len(chunk):]
		ids, ats, statuses := make([]string, len(chunk)), make([]int64, len(chunk)), make([]string, len(chunk))
		var fs []string
		for i, w := range chunk {
			ids[i], ats[i], statuses[i] = w.id, nanos(w.at), w.status
			if facts {
				fs = append(fs, w.facts)
			}
		}
		args := []any{ids, ats, statuses}
		if facts {
			args = append(args, fs)
		}
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return 0, fmt.Errorf("record status of %d targets: %w", len(chunk), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("record status of %d targets: %w", len(chunk), err)
		}
		updated += n
	}
	return updated, nil
}

// stmt returns the SQLite status update (with facts or not), prepared once.
// Only the batcher's one running writer calls it.
func (b *statusBatcher) stmt(ctx context.Context, facts bool) (*sql.Stmt, error) {
	k, q := 0, updateStatusSQLite
	if facts {
		k, q = 1, updateStatusFactsSQLite
	}
	b.mu.Lock()
	st := b.stmts[k]
	b.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := b.s.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("record status: prepare: %w", err)
	}
	b.mu.Lock()
	b.stmts[k] = st
	b.mu.Unlock()
	return st, nil
}

// missingTargets returns which of the targets of ws are not enrolled.
func (s *SQL) missingTargets(ctx context.Context, tx *sql.Tx, ws map[string]*statusWrite) (map[string]bool, error) {
	missing := make(map[string]bool, len(ws))
	for id := range ws {
		missing[id] = true
	}
	ids := make([]any, 0, len(ws))
	for id := range ws {
		ids = append(ids, id)
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), statusChunk)]
		ids = ids[len(chunk):]
		rows, err := tx.QueryContext(ctx, s.q(`SELECT id FROM targets WHERE id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`), chunk...)
		if err != nil {
			return nil, fmt.Errorf("record status: look up targets: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("record status: look up targets: %w", err)
			}
			delete(missing, id)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("record status: look up targets: %w", err)
		}
	}
	return missing, nil
}
