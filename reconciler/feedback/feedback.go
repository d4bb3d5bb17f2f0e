package feedback

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

// Errors of Receive, for callers to map onto answers.
var (
	// ErrInvalid is a batch that is empty or not JSON lines.
	ErrInvalid = errors.New("invalid feedback batch")
	// ErrOverBudget is a batch past the target's bytes for the day.
	ErrOverBudget = errors.New("feedback budget for the day is spent")
)

// MaxBatch bounds one uploaded batch (16 MiB); a day's budget takes several.
const MaxBatch = 16 << 20

// FileName is the one file of a feedback dataset version.
const FileName = "inputs.jsonl"

// Stores opens a named dataset store of the server.
type Stores func(ctx context.Context, name string) (blobs.Store, error)

// Options configure a Store. Stores is required; Lineage, when set,
// records each batch; Temp is where a batch is staged (os.TempDir()).
type Options struct {
	Stores  Stores
	Lineage *lineage.Graph
	Temp    string
	Now     func() time.Time
}

// Store keeps the index of feedback batches in the state database; their
// content lives in the dataset stores.
type Store struct {
	db   *sqldb.DB
	opts Options
}

// Open migrates the feedback table into db.
func Open(ctx context.Context, db *sqldb.DB, opts Options) (*Store, error) {
	if opts.Stores == nil {
		return nil, errors.New("open feedback: no dataset stores")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	err := db.Migrate(ctx, "feedback", []sqldb.Migration{
		{SQLite: `CREATE TABLE feedback_batches (target TEXT NOT NULL, release TEXT NOT NULL, content TEXT NOT NULL, dataset TEXT NOT NULL, store TEXT NOT NULL,
			model_digest TEXT NOT NULL, records BIGINT NOT NULL, bytes BIGINT NOT NULL, day TEXT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (target, release, content))`},
		{SQLite: `CREATE INDEX feedback_batches_at ON feedback_batches (at)`},
	})
	if err != nil {
		return nil, fmt.Errorf("open feedback: %w", err)
	}
	return &Store{db: db, opts: opts}, nil
}

// Upload is who sends a batch and under which limits, as the fleet API
// checked them against the target's desired state.
type Upload struct {
	Target, Release, ModelDigest string
	// Store names the dataset store; MaxPerDay the target's daily budget.
	Store     string
	MaxPerDay int64
}

// Receive stores one batch of JSON lines as a dataset version and records
// it. The same bytes from the same target and release (an upload retried
// after its answer was lost) are recorded once and answer the first record.
func (s *Store) Receive(ctx context.Context, up Upload, body io.Reader) (fleet.FeedbackBatch, error) {
	dir, err := os.MkdirTemp(s.opts.Temp, "cairn-feedback-")
	if err != nil {
		return fleet.FeedbackBatch{}, fmt.Errorf("stage feedback: %w", err)
	}
	defer os.RemoveAll(dir)
	limit := min(int64(MaxBatch), max(up.MaxPerDay, 0))
	content, records, n, err := stage(filepath.Join(dir, FileName), body, limit)
	if err != nil {
		return fleet.FeedbackBatch{}, err
	}
	if b, ok, err := s.find(ctx, up.Target, up.Release, content); err != nil || ok {
		return b, err
	}
	now := s.opts.Now().UTC()
	day := now.Format(time.DateOnly)
	var used int64
	if err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT COALESCE(SUM(bytes), 0) FROM feedback_batches WHERE target = ? AND release = ? AND day = ?`),
		up.Target, up.Release, day).Scan(&used); err != nil {
		return fleet.FeedbackBatch{}, fmt.Errorf("feedback budget of %s: %w", up.Target, err)
	}
	if used+n > up.MaxPerDay {
		return fleet.FeedbackBatch{}, fmt.Errorf("%w: %s sent %d of %d bytes of %s today, this batch has %d", ErrOverBudget, up.Target, used, up.MaxPerDay, up.Release, n)
	}
	bs, err := s.opts.Stores(ctx, up.Store)
	if err != nil {
		return fleet.FeedbackBatch{}, err
	}
	res, err := datasets.Push(ctx, bs, dir, datasets.PushOptions{})
	if err != nil {
		return fleet.FeedbackBatch{}, fmt.Errorf("store feedback of %s in %s: %w", up.Target, up.Store, err)
	}
	b := fleet.FeedbackBatch{Dataset: res.Digest, Store: up.Store, Target: up.Target, Release: up.Release, ModelDigest: up.ModelDigest,
		Records: records, Bytes: n, Time: now.Truncate(time.Microsecond)}
	r, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO feedback_batches (target, release, content, dataset, store, model_digest, records, bytes, day, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (target, release, content) DO NOTHING`),
		b.Target, b.Release, content, b.Dataset, b.Store, b.ModelDigest, b.Records, b.Bytes, day, b.Time.UnixMicro())
	if err != nil {
		return fleet.FeedbackBatch{}, fmt.Errorf("record feedback of %s: %w", up.Target, err)
	}
	if k, _ := r.RowsAffected(); k == 0 { // a concurrent retry recorded it first
		first, _, err := s.find(ctx, up.Target, up.Release, content)
		return first, err
	}
	if g := s.opts.Lineage; g != nil {
		if err := g.RecordFeedback(ctx, lineage.FeedbackFacts{Dataset: b.Dataset, Target: b.Target, Release: b.Release, ModelDigest: b.ModelDigest,
			Records: b.Records, Bytes: b.Bytes, Time: b.Time}); err != nil {
			return b, fmt.Errorf("record feedback lineage: %w", err)
		}
	}
	return b, nil
}

// stage copies body into path, checking that every line is one JSON value
// and that it holds at most limit bytes; it returns the sha256 of the
// content, the records and the bytes.
func stage(path string, body io.Reader, limit int64) (content string, records, n int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return "", 0, 0, fmt.Errorf("stage feedback: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(f, h))
	r := bufio.NewReaderSize(io.LimitReader(body, limit+1), 64<<10)
	for {
		line, rerr := r.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) { // a long line: gather it
			long := bytes.Clone(line)
			for errors.Is(rerr, bufio.ErrBufferFull) {
				line, rerr = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if rerr != nil && rerr != io.EOF {
			return "", 0, 0, fmt.Errorf("read feedback: %w", rerr)
		}
		n += int64(len(line))
		if n > limit {
			return "", 0, 0, fmt.Errorf("%w: more than %d bytes", ErrOverBudget, limit)
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if !json.Valid(t) {
				return "", 0, 0, fmt.Errorf("%w: line %d is not JSON", ErrInvalid, records+1)
			}
			records++
			w.Write(t)
			w.WriteByte('\n')
		}
		if rerr == io.EOF {
			break
		}
	}
	if records == 0 {
		return "", 0, 0, fmt.Errorf("%w: no records", ErrInvalid)
	}
	if err := w.Flush(); err != nil {
		return "", 0, 0, fmt.Errorf("stage feedback: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", 0, 0, fmt.Errorf("stage feedback: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), records, n, nil
}

func (s *Store) find(ctx context.Context, target, release, content string) (fleet.FeedbackBatch, bool, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT dataset, store, target, release, model_digest, records, bytes, at FROM feedback_batches WHERE target = ? AND release = ? AND content = ?`),
		target, release, content)
	if err != nil {
		return fleet.FeedbackBatch{}, false, fmt.Errorf("find feedback: %w", err)
	}
	bs, err := scan(rows)
	if err != nil || len(bs) == 0 {
		return fleet.FeedbackBatch{}, false, err
	}
	return bs[0], true, nil
}

// List returns the batches of target and release (each optional), newest
// first, at most 500.
func (s *Store) List(ctx context.Context, target, release string) ([]fleet.FeedbackBatch, error) {
	q := `SELECT dataset, store, target, release, model_digest, records, bytes, at FROM feedback_batches WHERE 1 = 1`
	var args []any
	if target != "" {
		q += ` AND target = ?`
		args = append(args, target)
	}
	if release != "" {
		q += ` AND release = ?`
		args = append(args, release)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(q+` ORDER BY at DESC LIMIT 500`), args...)
	if err != nil {
		return nil, fmt.Errorf("list feedback: %w", err)
	}
	return scan(rows)
}

func scan(rows *sql.Rows) ([]fleet.FeedbackBatch, error) {
	defer rows.Close()
	out := []fleet.FeedbackBatch{}
	for rows.Next() {
		var b fleet.FeedbackBatch
		var at int64
		if err := rows.Scan(&b.Dataset, &b.Store, &b.Target, &b.Release, &b.ModelDigest, &b.Records, &b.Bytes, &at); err != nil {
			return nil, fmt.Errorf("list feedback: %w", err)
		}
		b.Time = time.UnixMicro(at).UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}
