package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// EnrollTarget adds a target or replaces what is known of it: the targets
// of the SQL store, their status reports and deployment logs live here.
func (s *SQL) EnrollTarget(ctx context.Context, t Target) error {
	now := time.Now()
	if t.EnrolledAt.IsZero() {
		t.EnrolledAt = now
	}
	if t.State == "" {
		t.State = StateAccepted
	}
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO targets (id, name, labels, facts, cred_hash, enrolled_at, updated_at, state, pending_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, labels = excluded.labels, facts = excluded.facts, cred_hash = excluded.cred_hash, enrolled_at = excluded.enrolled_at, updated_at = excluded.updated_at, state = excluded.state, pending_hash = excluded.pending_hash`),
		t.ID, t.Name, mustJSON(t.Labels), mustJSON(t.Facts), t.CredHash, nanos(t.EnrolledAt), nanos(now), t.State, t.PendingHash)
	if err != nil {
		return fmt.Errorf("enroll target %s: %w", t.ID, err)
	}
	return nil
}

const targetCols = `id, name, labels, facts, cred_hash, enrolled_at, last_seen, status, updated_at, state, pending_hash`

func scanTarget(sc interface{ Scan(...any) error }) (Target, error) {
	var t Target
	var labels, facts, status string
	var enrolled, seen, updated int64
	if err := sc.Scan(&t.ID, &t.Name, &labels, &facts, &t.CredHash, &enrolled, &seen, &status, &updated, &t.State, &t.PendingHash); err != nil {
		return t, err
	}
	t.EnrolledAt, t.LastSeen, t.UpdatedAt = fromNanos(enrolled), fromNanos(seen), fromNanos(updated)
	if err := json.Unmarshal([]byte(labels), &t.Labels); err != nil {
		return t, fmt.Errorf("decode labels of %s: %w", t.ID, err)
	}
	if err := json.Unmarshal([]byte(facts), &t.Facts); err != nil {
		return t, fmt.Errorf("decode facts of %s: %w", t.ID, err)
	}
	if status != "" {
		t.Status = new(fleet.StatusReport)
		if err := json.Unmarshal([]byte(status), t.Status); err != nil {
			return t, fmt.Errorf("decode status of %s: %w", t.ID, err)
		}
	}
	return t, nil
}

func (s *SQL) Target(ctx context.Context, id string) (Target, error) {
	t, err := scanTarget(s.db.QueryRowContext(ctx, s.q(`SELECT `+targetCols+` FROM targets WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("target %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("read target %s: %w", id, err)
	}
	return t, nil
}

func (s *SQL) listTargets(ctx context.Context, where string, args ...any) ([]Target, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT `+targetCols+` FROM targets `+where+` ORDER BY id`), args...)
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	defer rows.Close()
	var out []Target
	for rows.Next() {
		t, err := scanTarget(rows)
		if err != nil {
			return nil, fmt.Errorf("list targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return out, nil
}

func (s *SQL) Targets(ctx context.Context) ([]Target, error) { return s.listTargets(ctx, "") }

func (s *SQL) SetTargetAuth(ctx context.Context, id, state, credHash, pendingHash string) error {
	res, err := s.db.ExecContext(ctx, s.q(`UPDATE targets SET state = ?, cred_hash = ?, pending_hash = ?, updated_at = ? WHERE id = ?`),
		state, credHash, pendingHash, nanos(time.Now()), id)
	if err != nil {
		return fmt.Errorf("set state of target %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("target %s: %w", id, ErrNotFound)
	}
	return nil
}

func (s *SQL) PutPreauth(ctx context.Context, name, tokenHash string) error {
	_, err := s.db.ExecContext(ctx, s.q(`INSERT INTO preauth (name, token_hash, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, created_at = excluded.created_at`), name, tokenHash, nanos(time.Now()))
	if err != nil {
		return fmt.Errorf("pre-authorise %s: %w", name, err)
	}
	return nil
}

func (s *SQL) TakePreauth(ctx context.Context, name, tokenHash string) (bool, error) {
	res, err := s.db.ExecContext(ctx, s.q(`DELETE FROM preauth WHERE name = ? AND token_hash = ?`), name, tokenHash)
	if err != nil {
		return false, fmt.Errorf("use pre-authorisation of %s: %w", name, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *SQL) TargetsUpdatedSince(ctx context.Context, since time.Time) ([]Target, error) {
	return s.listTargets(ctx, "WHERE updated_at >= ?", nanos(since))
}

// putLog appends a status report's deploy log entries of target id in tx
// (entries without a time are stamped at) and keeps the newest 500.
func (s *SQL) putLog(ctx context.Context, tx *sql.Tx, id string, logs []fleet.LogEntry, at time.Time) error {
	if len(logs) == 0 {
		return nil
	}
	for _, e := range logs {
		if e.Time.IsZero() {
			e.Time = at
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO deploy_log (target_id, at, release_name, phase, message) VALUES (?, ?, ?, ?, ?)`), id, nanos(e.Time), e.Release, e.Phase, e.Message); err != nil {
			return fmt.Errorf("record log of %s: %w", id, err)
		}
	}
	if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM deploy_log WHERE target_id = ? AND id < (SELECT COALESCE(MIN(id), 0) FROM (SELECT id FROM deploy_log WHERE target_id = ? ORDER BY id DESC LIMIT 500) AS newest)`), id, id); err != nil {
		return fmt.Errorf("trim log of %s: %w", id, err)
	}
	return nil
}

func (s *SQL) Log(ctx context.Context, id string, limit int) ([]fleet.LogEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT at, release_name, phase, message FROM deploy_log WHERE target_id = ? ORDER BY id DESC LIMIT ?`), id, limit)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", id, err)
	}
	defer rows.Close()
	var out []fleet.LogEntry
	for rows.Next() {
		var e fleet.LogEntry
		var at int64
		if err := rows.Scan(&at, &e.Release, &e.Phase, &e.Message); err != nil {
			return nil, fmt.Errorf("read log of %s: %w", id, err)
		}
		e.Time = fromNanos(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read log of %s: %w", id, err)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (s *SQL) TargetStampsSince(ctx context.Context, since time.Time) ([]TargetStamp, error) {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, state, updated_at FROM targets WHERE updated_at >= ?`), nanos(since))
	if err != nil {
		return nil, fmt.Errorf("list target stamps: %w", err)
	}
	defer rows.Close()
	var out []TargetStamp
	for rows.Next() {
		var st TargetStamp
		var at int64
		if err := rows.Scan(&st.ID, &st.State, &at); err != nil {
			return nil, fmt.Errorf("list target stamps: %w", err)
		}
		st.UpdatedAt = fromNanos(at)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list target stamps: %w", err)
	}
	return out, nil
}

// EachTargetStampSince calls fn with the id, state and updated_at
// (UnixNano) of each target TargetStampsSince returns, without holding
// them: id and state are valid only during the call (a fleet's stamps,
// read on every pass after a burst of reports, would be a string each).
func (s *SQL) EachTargetStampSince(ctx context.Context, since time.Time, fn func(id, state []byte, updatedAt int64) error) error {
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, state, updated_at FROM targets WHERE updated_at >= ?`), nanos(since))
	if err != nil {
		return fmt.Errorf("list target stamps: %w", err)
	}
	defer rows.Close()
	var id, state sql.RawBytes
	var at int64
	for rows.Next() {
		if err := rows.Scan(&id, &state, &at); err != nil {
			return fmt.Errorf("list target stamps: %w", err)
		}
		if err := fn(id, state, at); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list target stamps: %w", err)
	}
	return nil
}

func (s *SQL) TargetsByID(ctx context.Context, ids []string) ([]Target, error) {
	var out []Target
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i, id := range ids[:n] {
			args[i] = id
		}
		ts, err := s.listTargets(ctx, `WHERE id IN (?`+strings.Repeat(", ?", n-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
		ids = ids[n:]
	}
	return out, nil
}
