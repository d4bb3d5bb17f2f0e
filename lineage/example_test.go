package lineage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/lineage"
)

// An auditor's question: which model ran on dev-1 at 14:30, and what data
// trained it; where does anything trained on the second dataset run now?
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "lineage-example")
	defer os.RemoveAll(dir)
	db, err := sqldb.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	g, err := lineage.Open(ctx, db)
	if err != nil {
		panic(err)
	}
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	v1, v2 := "sha256:"+fmt.Sprintf("%064d", 1), "sha256:"+fmt.Sprintf("%064d", 2)
	d1, d2 := "sha256:"+fmt.Sprintf("%064d", 11), "sha256:"+fmt.Sprintf("%064d", 12)
	steps := []error{
		g.RecordPush(ctx, lineage.PushFacts{ModelDigest: v1, Revision: "a1", TrainedOn: map[string]string{"vib": d1}, Time: day.Add(9 * time.Hour)}),
		g.RecordPush(ctx, lineage.PushFacts{ModelDigest: v2, Revision: "b2", TrainedOn: map[string]string{"vib": d1, "vib2": d2}, Time: day.Add(10 * time.Hour)}),
		g.RecordAdmission(ctx, lineage.AdmissionFacts{Commit: "c1", Release: "bearing", ModelDigest: v1, Time: day.Add(11 * time.Hour)}),
		g.RecordDeployment(ctx, lineage.DeploymentFacts{Target: "dev-1", Release: "bearing", ModelDigest: v1, Start: day.Add(12 * time.Hour)}),
		g.RecordAdmission(ctx, lineage.AdmissionFacts{Commit: "c2", Release: "bearing", ModelDigest: v2, Time: day.Add(14 * time.Hour)}),
		g.RecordDeployment(ctx, lineage.DeploymentFacts{Target: "dev-1", Release: "bearing", ModelDigest: v2, Start: day.Add(14*time.Hour + 10*time.Minute)}),
		g.RecordRollback(ctx, lineage.RollbackFacts{Release: "bearing", From: v2, To: v1, Targets: []string{"dev-1"}, Time: day.Add(15 * time.Hour), Reason: "error_rate"}),
	}
	for _, err := range steps {
		if err != nil {
			panic(err)
		}
	}
	for _, h := range []int{13, 14, 16} {
		active, _ := g.At(ctx, "dev-1", day.Add(time.Duration(h)*time.Hour+30*time.Minute))
		for _, a := range active {
			fmt.Printf("%02d:30 dev-1 ran %s…%s from commit %s, trained on %d datasets\n", h, a.Model[:7], a.Model[len(a.Model)-1:], a.Commit, len(a.Datasets))
		}
	}
	during := day.Add(14*time.Hour + 30*time.Minute)
	where, _ := g.Where(ctx, "dataset:"+d2, &during)
	fmt.Println("trained on D2 at 14:30:", len(where), "target(s)")
	where, _ = g.Where(ctx, "dataset:"+d2, nil)
	fmt.Println("trained on D2 now:", len(where), "target(s)")
	// Output:
	// 13:30 dev-1 ran sha256:…1 from commit c1, trained on 1 datasets
	// 14:30 dev-1 ran sha256:…2 from commit c2, trained on 2 datasets
	// 16:30 dev-1 ran sha256:…1 from commit c1, trained on 1 datasets
	// trained on D2 at 14:30: 1 target(s)
	// trained on D2 now: 0 target(s)
}
