package lineage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
)

// backends runs fn once per database: SQLite in a temporary folder, and
// PostgreSQL in a fresh schema when the test server is there.
func backends(t *testing.T, fn func(t *testing.T, g *Graph)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, openSQLite(t))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, openPostgres(t))
	})
}

func openSQLite(t testing.TB) *Graph {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func openPostgres(t testing.TB) *Graph {
	t.Helper()
	url := testenv.Require(t, testenv.Postgres)
	ctx := context.Background()
	admin, err := sqldb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	b := make([]byte, 6)
	rand.Read(b)
	schema := "lineage_test_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	db, err := sqldb.Open(ctx, url+sep+"search_path="+schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func count(t *testing.T, g *Graph, table string) int {
	t.Helper()
	var n int
	if err := g.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var t0 = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func digestOf(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }

func TestRecordIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		edges := []Edge{
			{Type: EdgeTrainedOn, From: Node(NodeModel, digestOf('a')), To: Node(NodeDataset, digestOf('d')), Time: t0, Attrs: map[string]any{"name": "d"}},
			{Type: EdgeDeployedTo, From: Node(NodeModel, digestOf('a')), To: Node(NodeTarget, "dev-1"), Time: t0, Release: "r", Outcome: OutcomeSucceeded},
		}
		for range 2 {
			if err := g.Record(ctx, edges...); err != nil {
				t.Fatal(err)
			}
		}
		if n := count(t, g, "lineage_edges"); n != 2 {
			t.Fatalf("edges after replay = %d, want 2", n)
		}
		push := PushFacts{ModelDigest: digestOf('a'), Ref: "reg/m:1", Revision: "c1", TrainedOn: map[string]string{"d": digestOf('d'), "e": digestOf('e')}, Time: t0}
		dep := DeploymentFacts{Target: "dev-1", Release: "r", ModelDigest: digestOf('a'), Start: t0, End: t0.Add(time.Hour)}
		rb := RollbackFacts{Release: "r", Rollout: "r/1", From: digestOf('a'), To: digestOf('b'), Targets: []string{"dev-2", "dev-1"}, Time: t0.Add(2 * time.Hour)}
		adm := AdmissionFacts{Commit: "c1", Release: "r", ModelDigest: digestOf('a'), Datasets: map[string]string{"d": digestOf('d')}, Evaluations: []Evaluation{{Dataset: "h", Digest: digestOf('h'), Metrics: map[string]float64{"auc": 0.9}}}, Time: t0}
		for i := range 2 {
			adm.Time = t0.Add(time.Duration(i) * time.Hour) // re-admitted later: nothing new
			if err := g.RecordPush(ctx, push); err != nil {
				t.Fatal(err)
			}
			if err := g.RecordAdmission(ctx, adm); err != nil {
				t.Fatal(err)
			}
			if err := g.RecordDeployment(ctx, dep); err != nil {
				t.Fatal(err)
			}
			if err := g.RecordRollback(ctx, rb); err != nil {
				t.Fatal(err)
			}
		}
		// 2 raw; push: packagedFrom, trainedOn e (trainedOn d duplicates the
		// raw edge); admission: 2 declaredIn, evaluatedOn (trainedOn d is a
		// duplicate); deployment: the end (the start duplicates the raw
		// edge); rollback: rolledBack and an end and a start per target.
		if n, want := count(t, g, "lineage_edges"), 2+2+3+1+5; n != want {
			t.Errorf("edges = %d, want %d", n, want)
		}
		if n := count(t, g, "lineage_steps"); n != 4 {
			t.Errorf("steps = %d, want 4", n)
		}
	})
}

func TestRecordInvalid(t *testing.T) {
	g := openSQLite(t)
	ctx := context.Background()
	m, d := Node(NodeModel, digestOf('a')), Node(NodeDataset, digestOf('d'))
	for name, e := range map[string]Edge{
		"unknown type":       {Type: "derivedFrom", From: m, To: d, Time: t0},
		"bad from":           {Type: EdgeTrainedOn, From: "sha256:abc", To: d, Time: t0},
		"unknown node type":  {Type: EdgeTrainedOn, From: m, To: "table:x", Time: t0},
		"empty id":           {Type: EdgeTrainedOn, From: m, To: "dataset:", Time: t0},
		"no time":            {Type: EdgeTrainedOn, From: m, To: d},
		"phase off deploy":   {Type: EdgeTrainedOn, From: m, To: d, Time: t0, Phase: PhaseEnd},
		"bad deploy phase":   {Type: EdgeDeployedTo, From: m, To: "target:x", Time: t0, Phase: "middle"},
		"release off deploy": {Type: EdgeTrainedOn, From: m, To: d, Time: t0, Release: "r"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := g.Record(ctx, e); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Record = %v, want ErrInvalid", err)
			}
		})
	}
	for name, err := range map[string]error{
		"push without digest":   g.RecordPush(ctx, PushFacts{}),
		"admission no release":  g.RecordAdmission(ctx, AdmissionFacts{Commit: "c", ModelDigest: digestOf('a')}),
		"deployment no target":  g.RecordDeployment(ctx, DeploymentFacts{ModelDigest: digestOf('a')}),
		"deployment ends early": g.RecordDeployment(ctx, DeploymentFacts{Target: "x", ModelDigest: digestOf('a'), Start: t0, End: t0.Add(-time.Second)}),
		"rollback no from":      g.RecordRollback(ctx, RollbackFacts{Release: "r"}),
	} {
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if n := count(t, g, "lineage_edges"); n != 0 {
		t.Fatalf("%d edges recorded from invalid input", n)
	}
}

// history records the auditor's synthetic history: v1 trained on D1, v2 on
// D1 and D2; v1 deployed to three targets, v2 to one, then rolled back.
type history struct {
	v1, v2, d1, d2                    string
	deployV1, deployV2, rollback, end time.Time
}

func recordHistory(t *testing.T, g *Graph) history {
	t.Helper()
	ctx := context.Background()
	h := history{v1: digestOf('1'), v2: digestOf('2'), d1: digestOf('d'), d2: digestOf('e')}
	h.deployV1 = t0.Add(time.Hour)
	h.deployV2 = t0.Add(3 * time.Hour)
	h.rollback = t0.Add(4 * time.Hour)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(g.RecordPush(ctx, PushFacts{ModelDigest: h.v1, Ref: "reg.example/models/bearing:1.0", Source: "https://git.example/ml", Revision: "train1", TrainedOn: map[string]string{"vib": h.d1}, Time: t0}))
	must(g.RecordPush(ctx, PushFacts{ModelDigest: h.v2, Ref: "reg.example/models/bearing:2.0", Source: "https://git.example/ml", Revision: "train2", TrainedOn: map[string]string{"vib": h.d1, "vib2": h.d2}, Time: t0.Add(10 * time.Minute)}))
	must(g.RecordAdmission(ctx, AdmissionFacts{Commit: "c1", Release: "bearing", Model: "bearing", ModelDigest: h.v1, Datasets: map[string]string{"vib": h.d1}, Time: h.deployV1.Add(-time.Minute)}))
	for i, target := range []string{"dev-1", "dev-2", "dev-3"} {
		start := h.deployV1.Add(time.Duration(i) * time.Minute)
		must(g.RecordDeployment(ctx, DeploymentFacts{Target: target, Release: "bearing", Rollout: "bearing/1", ModelDigest: h.v1, Start: start, Outcome: OutcomeProgressing}))
		must(g.RecordDeployment(ctx, DeploymentFacts{Target: target, Release: "bearing", Rollout: "bearing/1", ModelDigest: h.v1, Start: start, Outcome: OutcomeSucceeded}))
	}
	must(g.RecordAdmission(ctx, AdmissionFacts{Commit: "c2", Release: "bearing", Model: "bearing", ModelDigest: h.v2, Datasets: map[string]string{"vib": h.d1, "vib2": h.d2}, Time: h.deployV2.Add(-time.Minute)}))
	must(g.RecordDeployment(ctx, DeploymentFacts{Target: "dev-1", Release: "bearing", Rollout: "bearing/2", ModelDigest: h.v2, Start: h.deployV2}))
	// dev-2 failed to activate v2: it keeps running v1.
	must(g.RecordDeployment(ctx, DeploymentFacts{Target: "dev-2", Release: "bearing", Rollout: "bearing/2", ModelDigest: h.v2, Start: h.deployV2, Outcome: OutcomeProgressing}))
	must(g.RecordDeployment(ctx, DeploymentFacts{Target: "dev-2", Release: "bearing", Rollout: "bearing/2", ModelDigest: h.v2, Start: h.deployV2, End: h.deployV2.Add(time.Minute), Outcome: OutcomeFailed}))
	must(g.RecordRollback(ctx, RollbackFacts{Release: "bearing", Rollout: "bearing/2", From: h.v2, To: h.v1, Targets: []string{"dev-1"}, Time: h.rollback, Reason: "error_rate 0.05 > 0.01"}))
	// dev-3 leaves the release later: its deployment ends.
	h.end = t0.Add(5 * time.Hour)
	must(g.Record(ctx, Edge{Type: EdgeDeployedTo, From: Node(NodeModel, h.v1), To: Node(NodeTarget, "dev-3"), Time: h.end, Phase: PhaseEnd, Outcome: OutcomeSucceeded, Release: "bearing"}))
	return h
}

func TestAuditorQuestions(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		h := recordHistory(t, g)
		g.now = func() time.Time { return t0.Add(24 * time.Hour) }
		at := func(target string, when time.Time) []Active {
			t.Helper()
			a, err := g.At(ctx, target, when)
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		for _, tc := range []struct {
			name     string
			target   string
			when     time.Time
			model    string // "" means nothing active
			commit   string
			datasets []string
			outcome  string
		}{
			{"before any deployment", "dev-1", h.deployV1.Add(-time.Second), "", "", nil, ""},
			{"v1 running", "dev-1", h.deployV2.Add(-time.Second), h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeSucceeded},
			{"at the start instant", "dev-1", h.deployV1, h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeSucceeded},
			{"during v2", "dev-1", h.deployV2.Add(30 * time.Minute), h.v2, "c2", []string{"dataset:" + h.d1, "dataset:" + h.d2}, OutcomeSucceeded},
			{"at the rollback", "dev-1", h.rollback, h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeRolledBack},
			{"after the rollback", "dev-1", h.rollback.Add(time.Hour), h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeRolledBack},
			{"failed activation keeps v1", "dev-2", h.deployV2.Add(30 * time.Minute), h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeSucceeded},
			{"ended deployment", "dev-3", h.end.Add(time.Minute), "", "", nil, ""},
			{"before it ended", "dev-3", h.end.Add(-time.Minute), h.v1, "c1", []string{"dataset:" + h.d1}, OutcomeSucceeded},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := at(tc.target, tc.when)
				if tc.model == "" {
					if len(got) != 0 {
						t.Fatalf("At = %+v, want nothing", got)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("At = %+v, want one model", got)
				}
				a := got[0]
				if a.Model != tc.model || a.Commit != tc.commit || a.Release != "bearing" || a.Outcome != tc.outcome || !reflect.DeepEqual(a.Datasets, tc.datasets) {
					t.Fatalf("At = %+v, want model %s commit %s datasets %v outcome %s", a, tc.model, tc.commit, tc.datasets, tc.outcome)
				}
			})
		}
		t.Run("unknown nodes are ErrNotFound", func(t *testing.T) {
			if a, err := g.At(ctx, "dev-9", h.end); err != nil || len(a) != 0 {
				t.Errorf("At(dev-9) = %v, %v; want nothing ran (lineage knows no enrolment)", a, err)
			}
			unknown := "dataset:sha256:" + strings.Repeat("0", 64)
			if _, err := g.Where(ctx, unknown, nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("Where(%s) = %v, want ErrNotFound", unknown, err)
			}
			if _, err := g.Upstream(ctx, "target:dev-9", 1); !errors.Is(err, ErrNotFound) {
				t.Errorf("Upstream(target:dev-9) = %v, want ErrNotFound", err)
			}
			if _, err := g.Downstream(ctx, strings.Repeat("0", 64), 1); !errors.Is(err, ErrNotFound) {
				t.Errorf("Downstream(bare digest) = %v, want ErrNotFound", err)
			}
		})
		where := func(node string, when *time.Time) []string {
			t.Helper()
			a, err := g.Where(ctx, node, when)
			if err != nil {
				t.Fatal(err)
			}
			var targets []string
			for _, x := range a {
				targets = append(targets, x.Target)
			}
			return targets
		}
		during, after, late := h.deployV2.Add(30*time.Minute), h.rollback.Add(time.Minute), h.end.Add(time.Minute)
		for _, tc := range []struct {
			name string
			node string
			when *time.Time
			want []string
		}{
			{"D2 during v2", "dataset:" + h.d2, &during, []string{"dev-1"}},
			{"D2 bare digest during v2", h.d2, &during, []string{"dev-1"}},
			{"D2 after rollback", "dataset:" + h.d2, &after, nil},
			{"D2 now", "dataset:" + h.d2, nil, nil},
			{"D1 during v2", "dataset:" + h.d1, &during, []string{"dev-1", "dev-2", "dev-3"}},
			{"v1 during v2", "model:" + h.v1, &during, []string{"dev-2", "dev-3"}},
			{"v1 after dev-3 left", h.v1, &late, []string{"dev-1", "dev-2"}},
			{"commit of training code", "commit:train2", &during, []string{"dev-1"}},
			{"before anything", "dataset:" + h.d1, &t0, nil},
		} {
			t.Run("where "+tc.name, func(t *testing.T) {
				if got := where(tc.node, tc.when); !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("Where = %v, want %v", got, tc.want)
				}
			})
		}
	})
}

func TestWalk(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		h := recordHistory(t, g)
		nodes := func(sg *Subgraph) map[string]int {
			m := map[string]int{}
			for _, n := range sg.Nodes {
				m[n.ID] = n.Depth
			}
			return m
		}
		up, err := g.Upstream(ctx, "target:dev-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{
			"target:dev-1": 0, "model:" + h.v1: 1, "model:" + h.v2: 1,
			"dataset:" + h.d1: 2, "dataset:" + h.d2: 2, "commit:train1": 2, "commit:train2": 2,
			"release:bearing": 2, "commit:c1": 3, "commit:c2": 3,
		}
		if got := nodes(up); !reflect.DeepEqual(got, want) {
			t.Fatalf("Upstream(dev-1) nodes = %v\nwant %v", got, want)
		}
		if up.Depth != DefaultDepth || up.Direction != "upstream" {
			t.Errorf("Upstream depth %d direction %s", up.Depth, up.Direction)
		}
		var deploy *Link
		for i, l := range up.Links {
			if l.Type == EdgeDeployedTo && l.From == "model:"+h.v2 {
				deploy = &up.Links[i]
			}
		}
		if deploy == nil || deploy.To != "target:dev-1" || deploy.Count != 2 || !deploy.First.Equal(h.deployV2) || !deploy.Last.Equal(h.rollback) || deploy.Outcome != OutcomeRolledBack {
			t.Fatalf("v2 → dev-1 link = %+v", deploy)
		}
		up1, err := g.Upstream(ctx, "target:dev-1", 1)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(up1.Nodes); n != 3 {
			t.Errorf("Upstream depth 1: %d nodes, want 3: %+v", n, up1.Nodes)
		}
		down, err := g.Downstream(ctx, "dataset:"+h.d2, 5)
		if err != nil {
			t.Fatal(err)
		}
		want = map[string]int{"dataset:" + h.d2: 0, "model:" + h.v2: 1, "rollout:bearing/2": 2, "target:dev-1": 2, "target:dev-2": 2}
		if got := nodes(down); !reflect.DeepEqual(got, want) {
			t.Fatalf("Downstream(D2) nodes = %v\nwant %v", got, want)
		}
		if _, err := g.Upstream(ctx, "table:nonsense", 1); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Upstream(table:nonsense) = %v, want ErrInvalid", err)
		}
	})
}

// A release denied at a commit (a promotion gate) and admitted later at the
// same commit records both steps, and the admission's edges.
func TestAdmissionDeniedThenAdmitted(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		t0 := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
		adm := AdmissionFacts{Commit: "c1", Release: "prod", ModelDigest: digestOf('a'), Denied: true, Message: "promotion", Time: t0}
		for range 2 {
			if err := g.RecordAdmission(ctx, adm); err != nil {
				t.Fatal(err)
			}
		}
		adm.Denied, adm.Message, adm.Time = false, "", t0.Add(time.Minute)
		if err := g.RecordAdmission(ctx, adm); err != nil {
			t.Fatal(err)
		}
		if n := count(t, g, "lineage_steps"); n != 2 {
			t.Fatalf("steps = %d, want the denial and the admission", n)
		}
		if n := count(t, g, "lineage_edges"); n == 0 {
			t.Fatal("the admission recorded no edges")
		}
	})
}
