package evaluations

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/evaluation"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
)

// Errors of Record, for the fleet API to map onto answers.
var (
	// ErrNotFound is a run the server does not know.
	ErrNotFound = errors.New("evaluation run not found")
	// ErrInvalid is a report that does not match its run.
	ErrInvalid = errors.New("invalid evaluation report")
)

// Run is an evaluation run as the server keeps it: what the evaluator is
// told, plus the dataset store, the thresholds and who runs it.
type Run struct {
	fleet.EvaluationRun
	Store     string                                `json:"store"`
	Metrics   map[string]manifests.EvaluationMetric `json:"metrics"`
	Evaluator string                                `json:"evaluator"`
}

// Model returns the run's model of role, if any.
func (r *Run) Model(role string) (fleet.EvaluationModel, bool) {
	for _, m := range r.Models {
		if m.Role == role {
			return m, true
		}
	}
	return fleet.EvaluationModel{}, false
}

// Result is one model's latest evaluation on a dataset.
type Result struct {
	Run     string
	Digest  string
	Metrics map[string]float64
	Error   string
	Time    time.Time
}

// Options configure a Store; Lineage, when set, records each result.
type Options struct {
	Lineage *lineage.Graph
	Now     func() time.Time
}

// Store keeps runs and results in the state database.
type Store struct {
	db   *sqldb.DB
	opts Options
}

// Open migrates the evaluation tables into db.
func Open(ctx context.Context, db *sqldb.DB, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	err := db.Migrate(ctx, "evaluations", []sqldb.Migration{
		{SQLite: `CREATE TABLE evaluation_runs (id TEXT PRIMARY KEY, release TEXT NOT NULL, evaluator TEXT NOT NULL,
			requested BIGINT NOT NULL, done BIGINT, body TEXT NOT NULL, verdict TEXT NOT NULL DEFAULT '')`},
		{SQLite: `CREATE INDEX evaluation_runs_release ON evaluation_runs (release, requested)`},
		{SQLite: `CREATE TABLE evaluation_results (run TEXT NOT NULL, role TEXT NOT NULL, model_digest TEXT NOT NULL, dataset TEXT NOT NULL,
			metrics TEXT NOT NULL, error TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL, evaluator TEXT NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (run, role))`},
		{SQLite: `CREATE INDEX evaluation_results_model ON evaluation_results (model_digest, dataset, at)`},
	})
	if err != nil {
		return nil, fmt.Errorf("open evaluations: %w", err)
	}
	return &Store{db: db, opts: opts}, nil
}

// Request stores a new run, pending; a run of the same id is kept as it is.
func (s *Store) Request(ctx context.Context, r Run) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("request evaluation %s: %w", r.ID, err)
	}
	_, err = s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO evaluation_runs (id, release, evaluator, requested, body) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`), r.ID, r.Release, r.Evaluator, r.Requested.UnixMicro(), string(b))
	if err != nil {
		return fmt.Errorf("request evaluation %s: %w", r.ID, err)
	}
	return nil
}

// Reassign gives a pending run to another evaluator.
func (s *Store) Reassign(ctx context.Context, r Run) error {
	b, _ := json.Marshal(r)
	_, err := s.db.ExecContext(ctx, s.db.Rebind(`UPDATE evaluation_runs SET evaluator = ?, body = ? WHERE id = ? AND done IS NULL`), r.Evaluator, string(b), r.ID)
	if err != nil {
		return fmt.Errorf("reassign evaluation %s: %w", r.ID, err)
	}
	return nil
}

// Cancel drops a pending run (superseded by a newer one of its release).
func (s *Store) Cancel(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM evaluation_runs WHERE id = ? AND done IS NULL`), id); err != nil {
		return fmt.Errorf("cancel evaluation %s: %w", id, err)
	}
	return nil
}

// Pending returns the runs not reported yet, oldest first.
func (s *Store) Pending(ctx context.Context) ([]Run, error) {
	recs, err := s.query(ctx, `WHERE done IS NULL ORDER BY requested, id`)
	if err != nil {
		return nil, err
	}
	out := make([]Run, len(recs))
	for i, r := range recs {
		out[i] = r.run
	}
	return out, nil
}

// LastRequested is when the newest run of release was asked for (zero when none).
func (s *Store) LastRequested(ctx context.Context, release string) (time.Time, error) {
	var at sql.NullInt64
	if err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT MAX(requested) FROM evaluation_runs WHERE release = ?`), release).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("last evaluation of %s: %w", release, err)
	}
	if !at.Valid {
		return time.Time{}, nil
	}
	return time.UnixMicro(at.Int64).UTC(), nil
}

// Get returns the run id.
func (s *Store) Get(ctx context.Context, id string) (Run, bool, error) {
	recs, err := s.query(ctx, `WHERE id = ?`, id)
	if err != nil || len(recs) == 0 {
		return Run{}, false, err
	}
	return recs[0].run, true, nil
}

// Latest returns the newest result of model digest on dataset, failed
// ones included; ok is false when it was never evaluated there.
func (s *Store) Latest(ctx context.Context, digest, dataset string) (Result, bool, error) {
	var r Result
	var metrics string
	var at int64
	err := s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT run, model_digest, metrics, error, at FROM evaluation_results
		WHERE model_digest = ? AND dataset = ? ORDER BY at DESC, run DESC LIMIT 1`), digest, dataset).Scan(&r.Run, &r.Digest, &metrics, &r.Error, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("latest evaluation of %s: %w", digest, err)
	}
	if metrics != "" {
		if err := json.Unmarshal([]byte(metrics), &r.Metrics); err != nil {
			return Result{}, false, fmt.Errorf("latest evaluation of %s: %w", digest, err)
		}
	}
	r.Time = time.UnixMicro(at).UTC()
	return r, true, nil
}

// Record stores an evaluator's report of run id: one result per model of
// the run, each recorded in lineage (model evaluatedOn dataset) when it
// has metrics, and the run's verdict. A run already reported answers its
// record unchanged.
func (s *Store) Record(ctx context.Context, id, evaluator string, rep fleet.EvaluationReport) (fleet.EvaluationRecord, error) {
	recs, err := s.query(ctx, `WHERE id = ?`, id)
	if err != nil {
		return fleet.EvaluationRecord{}, err
	}
	if len(recs) == 0 {
		return fleet.EvaluationRecord{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if recs[0].Done != nil {
		return recs[0].EvaluationRecord, nil
	}
	run := recs[0].run
	if err := check(run, rep); err != nil {
		return fleet.EvaluationRecord{}, err
	}
	now := s.opts.Now().UTC().Truncate(time.Microsecond)
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		for _, res := range rep.Results {
			var metrics []byte
			if len(res.Metrics) > 0 {
				metrics, _ = json.Marshal(res.Metrics)
			}
			if _, err := s.db.ExecContext(ctx, s.db.Rebind(`INSERT INTO evaluation_results (run, role, model_digest, dataset, metrics, error, seconds, evaluator, at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run, role) DO NOTHING`),
				id, res.Role, res.Digest, run.Dataset, string(metrics), res.Error, res.Seconds, evaluator, now.UnixMicro()); err != nil {
				return fmt.Errorf("record evaluation %s: %w", id, err)
			}
			if g := s.opts.Lineage; g != nil && len(res.Metrics) > 0 {
				if err := g.RecordEvaluation(ctx, lineage.EvaluationFacts{Run: id, Release: run.Release, Role: res.Role, ModelDigest: res.Digest,
					Dataset: run.Dataset, Evaluator: evaluator, Metrics: res.Metrics, Time: now}); err != nil {
					return err
				}
			}
		}
		v, err := s.verdict(ctx, run, rep)
		if err != nil {
			return err
		}
		vb, _ := json.Marshal(v)
		_, err = s.db.ExecContext(ctx, s.db.Rebind(`UPDATE evaluation_runs SET done = ?, evaluator = ?, verdict = ? WHERE id = ? AND done IS NULL`),
			now.UnixMicro(), evaluator, string(vb), id)
		if err != nil {
			return fmt.Errorf("record evaluation %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fleet.EvaluationRecord{}, err
	}
	recs, err = s.query(ctx, `WHERE id = ?`, id)
	if err != nil || len(recs) == 0 {
		return fleet.EvaluationRecord{}, errors.Join(err, fmt.Errorf("%w: %s", ErrNotFound, id))
	}
	return recs[0].EvaluationRecord, nil
}

// check refuses a report that does not score exactly the run's models.
func check(run Run, rep fleet.EvaluationReport) error {
	if len(rep.Results) != len(run.Models) {
		return fmt.Errorf("%w: run %s scores %d models, the report has %d results", ErrInvalid, run.ID, len(run.Models), len(rep.Results))
	}
	seen := map[string]bool{}
	for _, res := range rep.Results {
		m, ok := run.Model(res.Role)
		switch {
		case !ok || seen[res.Role]:
			return fmt.Errorf("%w: run %s: unexpected or repeated role %q", ErrInvalid, run.ID, res.Role)
		case m.Digest != res.Digest:
			return fmt.Errorf("%w: run %s: the %s is %s, not %s", ErrInvalid, run.ID, res.Role, m.Digest, res.Digest)
		case len(res.Metrics) == 0 && res.Error == "":
			return fmt.Errorf("%w: run %s: the %s has neither metrics nor an error", ErrInvalid, run.ID, res.Role)
		case len(res.Metrics) > evaluation.MaxMetrics || len(res.Error) > 4000:
			return fmt.Errorf("%w: run %s: the %s's result is too large", ErrInvalid, run.ID, res.Role)
		}
		seen[res.Role] = true
	}
	return nil
}

// verdict judges the run's candidate under its thresholds against its
// champion: the champion's result of this run, else its latest on the
// dataset. A failed evaluation is a failing verdict saying why.
func (s *Store) verdict(ctx context.Context, run Run, rep fleet.EvaluationReport) (*fleet.EvaluationVerdict, error) {
	var cand, champ *fleet.EvaluationResult
	for i := range rep.Results {
		switch rep.Results[i].Role {
		case fleet.RoleCandidate:
			cand = &rep.Results[i]
		case fleet.RoleChampion:
			champ = &rep.Results[i]
		}
	}
	if cand == nil {
		return nil, nil
	}
	if cand.Error != "" {
		return &fleet.EvaluationVerdict{Reasons: []string{"the candidate's evaluation failed: " + cand.Error}, Summary: "candidate evaluation failed"}, nil
	}
	var champMetrics map[string]float64
	if champ != nil {
		if champ.Error != "" {
			return &fleet.EvaluationVerdict{Reasons: []string{"the champion's evaluation failed: " + champ.Error}, Summary: "champion evaluation failed"}, nil
		}
		champMetrics = champ.Metrics
	}
	v := evaluation.Compare(run.Metrics, cand.Metrics, champMetrics)
	return Wire(v), nil
}

// Wire is the verdict as the fleet API lists it, with its one-line summary.
func Wire(v evaluation.Verdict) *fleet.EvaluationVerdict {
	return &fleet.EvaluationVerdict{Pass: v.Pass, Reasons: v.Reasons, Summary: Summary(v)}
}

// Summary is one line per verdict: "auc 0.81 vs champion 0.97, f1 0.9".
func Summary(v evaluation.Verdict) string {
	var parts []string
	for _, m := range v.Metrics {
		if m.Candidate == nil {
			parts = append(parts, m.Name+" missing")
			continue
		}
		p := fmt.Sprintf("%s %.4g", m.Name, *m.Candidate)
		if m.Champion != nil {
			p += fmt.Sprintf(" vs champion %.4g", *m.Champion)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// List returns the runs of release ("" for all), newest first, at most 100.
func (s *Store) List(ctx context.Context, release string) ([]fleet.EvaluationRecord, error) {
	q, args := `WHERE 1 = 1`, []any{}
	if release != "" {
		q, args = `WHERE release = ?`, []any{release}
	}
	recs, err := s.query(ctx, q+` ORDER BY requested DESC, id DESC LIMIT 100`, args...)
	if err != nil {
		return nil, err
	}
	out := make([]fleet.EvaluationRecord, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.EvaluationRecord)
	}
	return out, nil
}

// Records returns the record of run id (none when unknown).
func (s *Store) Records(ctx context.Context, id string) ([]fleet.EvaluationRecord, error) {
	recs, err := s.query(ctx, `WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	out := make([]fleet.EvaluationRecord, len(recs))
	for i, r := range recs {
		out[i] = r.EvaluationRecord
	}
	return out, nil
}

type record struct {
	fleet.EvaluationRecord
	run Run
}

func (s *Store) query(ctx context.Context, where string, args ...any) ([]record, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT id, evaluator, done, body, verdict FROM evaluation_runs `+where), args...)
	if err != nil {
		return nil, fmt.Errorf("read evaluations: %w", err)
	}
	defer rows.Close()
	var out []record
	for rows.Next() {
		var id, evaluator, body, verdict string
		var done sql.NullInt64
		if err := rows.Scan(&id, &evaluator, &done, &body, &verdict); err != nil {
			return nil, fmt.Errorf("read evaluations: %w", err)
		}
		var r record
		if err := json.Unmarshal([]byte(body), &r.run); err != nil {
			return nil, fmt.Errorf("read evaluation %s: %w", id, err)
		}
		r.run.Evaluator = evaluator
		r.EvaluationRun, r.Evaluator = r.run.EvaluationRun, evaluator
		if done.Valid {
			t := time.UnixMicro(done.Int64).UTC()
			r.Done = &t
		}
		if verdict != "" && verdict != "null" {
			r.Verdict = &fleet.EvaluationVerdict{}
			if err := json.Unmarshal([]byte(verdict), r.Verdict); err != nil {
				return nil, fmt.Errorf("read evaluation %s: %w", id, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read evaluations: %w", err)
	}
	for i := range out {
		if out[i].Done == nil {
			continue
		}
		res, err := s.results(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out[i].Results = res
	}
	return out, nil
}

func (s *Store) results(ctx context.Context, run string) ([]fleet.EvaluationResult, error) {
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(`SELECT role, model_digest, metrics, error, seconds FROM evaluation_results WHERE run = ?`), run)
	if err != nil {
		return nil, fmt.Errorf("read evaluation %s: %w", run, err)
	}
	defer rows.Close()
	var out []fleet.EvaluationResult
	for rows.Next() {
		var r fleet.EvaluationResult
		var metrics string
		if err := rows.Scan(&r.Role, &r.Digest, &metrics, &r.Error, &r.Seconds); err != nil {
			return nil, fmt.Errorf("read evaluation %s: %w", run, err)
		}
		if metrics != "" {
			json.Unmarshal([]byte(metrics), &r.Metrics)
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b fleet.EvaluationResult) int { return strings.Compare(a.Role, b.Role) })
	return out, rows.Err()
}
