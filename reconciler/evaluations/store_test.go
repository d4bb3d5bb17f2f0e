package evaluations

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
)

const (
	holdout = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	v1      = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	v2      = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// backends runs f on SQLite and, when the test server runs, PostgreSQL.
func backends(t *testing.T, f func(t *testing.T, dsn func(testing.TB) string)) {
	dbs := testenv.Databases("evaluations")
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) { f(t, dbs[name]) })
	}
}

func open(t *testing.T, dsn string) (*Store, *lineage.Graph) {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := lineage.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, db, Options{Lineage: g})
	if err != nil {
		t.Fatal(err)
	}
	return s, g
}

func run(id string, models ...fleet.EvaluationModel) Run {
	min, drop := 0.9, 0.02
	return Run{EvaluationRun: fleet.EvaluationRun{ID: id, Release: "prod", Dataset: holdout, Command: []string{"evaluate"}, Timeout: time.Minute,
		Models: models, Reason: "candidate", Requested: time.Now().UTC().Truncate(time.Microsecond)},
		Store: "default", Metrics: map[string]manifests.EvaluationMetric{"auc": {Min: &min, MaxDrop: &drop}}, Evaluator: "eval-1"}
}

var (
	cand1 = fleet.EvaluationModel{Role: fleet.RoleCandidate, Artifact: "r/m@" + v1, Digest: v1}
	cand2 = fleet.EvaluationModel{Role: fleet.RoleCandidate, Artifact: "r/m@" + v2, Digest: v2}
	champ = fleet.EvaluationModel{Role: fleet.RoleChampion, Artifact: "r/m@" + v1, Digest: v1}
)

// TestRecord: a run's report is checked against its models, recorded
// once (a retry answers the first record), judged candidate against
// champion, and each scored model is evaluatedOn the holdout in lineage.
func TestRecord(t *testing.T) { backends(t, testRecord) }

func testRecord(t *testing.T, dsn func(testing.TB) string) {
	ctx := context.Background()
	s, g := open(t, dsn(t))
	if err := s.Request(ctx, run("ev-1", cand1)); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Pending(ctx); len(p) != 1 || p[0].Evaluator != "eval-1" {
		t.Fatalf("pending %+v", p)
	}
	rec, err := s.Record(ctx, "ev-1", "eval-1", fleet.EvaluationReport{Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v1, Metrics: map[string]float64{"auc": 0.97}}}})
	if err != nil || rec.Done == nil || rec.Verdict == nil || !rec.Verdict.Pass || rec.Verdict.Summary != "auc 0.97" {
		t.Fatalf("record ev-1: %+v, %v", rec, err)
	}
	if p, _ := s.Pending(ctx); len(p) != 0 {
		t.Fatalf("pending after the report: %+v", p)
	}

	if err := s.Request(ctx, run("ev-2", cand2, champ)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]fleet.EvaluationReport{
		"missing the champion": {Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v2, Metrics: map[string]float64{"auc": 0.9}}}},
		"wrong digest": {Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v1, Metrics: map[string]float64{"auc": 0.9}},
			{Role: fleet.RoleChampion, Digest: v1, Metrics: map[string]float64{"auc": 0.97}}}},
		"no metrics nor error": {Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v2}, {Role: fleet.RoleChampion, Digest: v1, Metrics: map[string]float64{"auc": 0.97}}}},
		"role twice": {Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v2, Metrics: map[string]float64{"auc": 0.9}},
			{Role: fleet.RoleCandidate, Digest: v2, Metrics: map[string]float64{"auc": 0.9}}}},
	}
	for name, rep := range bad {
		if _, err := s.Record(ctx, "ev-2", "eval-1", rep); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Record(ctx, "ev-9", "eval-1", fleet.EvaluationReport{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	good := fleet.EvaluationReport{Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v2, Metrics: map[string]float64{"auc": 0.91}},
		{Role: fleet.RoleChampion, Digest: v1, Metrics: map[string]float64{"auc": 0.96}}}}
	rec, err = s.Record(ctx, "ev-2", "eval-1", good)
	if err != nil || rec.Verdict == nil || rec.Verdict.Pass || len(rec.Verdict.Reasons) != 1 ||
		rec.Verdict.Reasons[0] != "auc 0.91 is 0.05 below the champion's 0.96 (maxDrop 0.02)" || len(rec.Results) != 2 {
		t.Fatalf("record ev-2: %+v, %v", rec, err)
	}
	again, err := s.Record(ctx, "ev-2", "eval-1", fleet.EvaluationReport{Results: []fleet.EvaluationResult{{Role: fleet.RoleCandidate, Digest: v2, Metrics: map[string]float64{"auc": 0.99}},
		{Role: fleet.RoleChampion, Digest: v1, Metrics: map[string]float64{"auc": 0.96}}}})
	if err != nil || again.Verdict.Pass || *again.Done != *rec.Done {
		t.Fatalf("a second report changed the run: %+v, %v", again, err)
	}

	latest, ok, err := s.Latest(ctx, v1, holdout)
	if err != nil || !ok || latest.Run != "ev-2" || latest.Metrics["auc"] != 0.96 {
		t.Fatalf("latest of v1: %+v %v %v", latest, ok, err)
	}
	if _, ok, _ := s.Latest(ctx, v2, "sha256:other"); ok {
		t.Fatal("v2 evaluated on a dataset it never saw")
	}
	list, err := s.List(ctx, "prod")
	if err != nil || len(list) != 2 || list[0].ID != "ev-2" && list[1].ID != "ev-2" {
		t.Fatalf("list: %+v, %v", list, err)
	}

	up, err := g.Upstream(ctx, lineage.Node(lineage.NodeModel, v2), 1)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, l := range up.Links {
		if l.Type == lineage.EdgeEvaluatedOn && l.To == lineage.Node(lineage.NodeDataset, holdout) {
			found = true
		}
	}
	if !found {
		t.Fatalf("no evaluatedOn edge from v2: %+v", up.Links)
	}
}

// TestRecordFailedCandidate: an evaluate command that printed garbage is
// a failing verdict saying so, never metrics.
func TestRecordFailedCandidate(t *testing.T) { backends(t, testRecordFailedCandidate) }

func testRecordFailedCandidate(t *testing.T, dsn func(testing.TB) string) {
	ctx := context.Background()
	s, _ := open(t, dsn(t))
	s.Request(ctx, run("ev-3", cand2, champ))
	rec, err := s.Record(ctx, "ev-3", "eval-1", fleet.EvaluationReport{Results: []fleet.EvaluationResult{
		{Role: fleet.RoleCandidate, Digest: v2, Error: "evaluate: evaluate command output: want one JSON object"},
		{Role: fleet.RoleChampion, Digest: v1, Metrics: map[string]float64{"auc": 0.96}}}})
	if err != nil || rec.Verdict == nil || rec.Verdict.Pass || !strings.Contains(rec.Verdict.Reasons[0], "candidate's evaluation failed") {
		t.Fatalf("%+v, %v", rec, err)
	}
	latest, ok, _ := s.Latest(ctx, v2, holdout)
	if !ok || latest.Error == "" || latest.Metrics != nil {
		t.Fatalf("latest of the failed candidate: %+v", latest)
	}
}

// TestCancelAndReassign: a pending run can move to another evaluator or
// be dropped; a reported one stays.
func TestCancelAndReassign(t *testing.T) { backends(t, testCancelAndReassign) }

func testCancelAndReassign(t *testing.T, dsn func(testing.TB) string) {
	ctx := context.Background()
	s, _ := open(t, dsn(t))
	r := run("ev-4", cand1)
	s.Request(ctx, r)
	r.Evaluator = "eval-2"
	if err := s.Reassign(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := s.Get(ctx, "ev-4"); !ok || got.Evaluator != "eval-2" {
		t.Fatalf("reassigned run %+v", got)
	}
	last, _ := s.LastRequested(ctx, "prod")
	if !last.Equal(r.Requested) {
		t.Fatalf("last requested %v, want %v", last, r.Requested)
	}
	if err := s.Cancel(ctx, "ev-4"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Get(ctx, "ev-4"); ok {
		t.Fatal("cancelled run still there")
	}
}
