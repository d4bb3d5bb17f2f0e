package reconciler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// TestStatusIngestSurvivesKill: many targets report to a real `cairn
// serve` (a re-executed test binary) as fast as it takes them, each report
// numbered; serve is SIGKILLed mid-stream and restarted on the same database,
// several times. A report answered 204 was committed in its group commit,
// so after every kill the stored report of each target is numbered at least
// as high as the last one acknowledged. Then every target reports once more
// to the restarted serve, which must take it. On SQLite and PostgreSQL.
func TestStatusIngestSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("about half a minute")
	}
	t.Run("sqlite", func(t *testing.T) {
		data := t.TempDir()
		ingestKillRun(t, filepath.Join(data, "cairn.db"), data)
	})
	t.Run("postgres", func(t *testing.T) {
		ingestKillRun(t, freshPostgres(t), t.TempDir())
	})
}

const ingestTargets = 200

func ingestKillRun(t *testing.T, database, data string) {
	ctx := context.Background()
	cfg := Config{Database: database, EnrollToken: "enroll-secret", AdminToken: "admin-secret",
		ReconcileInterval: Duration(200 * time.Millisecond), Enrollment: "auto", EnrollmentRate: 10000, RequestRate: 100000, Data: data}
	serve := startReplica(t, "serve", cfg)
	ids := make([]*fleet.EnrollResponse, ingestTargets)
	for i := range ids {
		ids[i] = enroll(t, fleet.NewClient(serve.base), fmt.Sprintf("dev-%03d", i))
	}
	db, err := sqldb.Open(ctx, database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(18, 1))
	acked := make([]float64, ingestTargets) // last seq answered 204, by target
	var seq float64
	var mu sync.Mutex
	for round := 1; round <= 3; round++ {
		base := serve.base
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var sent, ok int
		for i, er := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := fleet.NewClient(base)
				for rctx.Err() == nil {
					mu.Lock()
					seq++
					n := seq
					sent++
					mu.Unlock()
					rep := fleet.StatusReport{Time: time.Now(), Releases: []fleet.ReleaseStatus{}, Metrics: map[string]float64{"seq": n}}
					if err := c.ReportStatus(rctx, er.ID, er.Credential, rep); err == nil {
						mu.Lock()
						acked[i], ok = max(acked[i], n), ok+1
						mu.Unlock()
					}
					// Under the per-target limit (1 a second, bursts of 10)
					// most of the time, over it now and then.
					time.Sleep(time.Duration(50+rand.IntN(100)) * time.Millisecond)
				}
			}()
		}
		wait := 1500*time.Millisecond + time.Duration(rng.IntN(1000))*time.Millisecond
		time.Sleep(wait)
		serve.cmd.Process.Kill()
		<-serve.done
		stop()
		wg.Wait()
		mu.Lock()
		t.Logf("round %d: SIGKILL after %s; %d reports sent, %d acknowledged", round, wait, sent, ok)
		if ok == 0 {
			t.Fatal("no report acknowledged before the kill")
		}
		checkAcked(t, ctx, st, ids, acked)
		mu.Unlock()
		serve = startReplica(t, "serve", cfg)
	}
	// The restarted serve takes reports again, and they are stored.
	c := fleet.NewClient(serve.base)
	for i, er := range ids {
		seq++
		rep := fleet.StatusReport{Time: time.Now(), Releases: []fleet.ReleaseStatus{}, Metrics: map[string]float64{"seq": seq}}
		if err := c.ReportStatus(ctx, er.ID, er.Credential, rep); err != nil {
			t.Fatalf("report after the last restart: %v", err)
		}
		acked[i] = seq
	}
	checkAcked(t, ctx, st, ids, acked)
}

// checkAcked reads every target's stored report: numbered at least as high
// as the last one acknowledged.
func checkAcked(t *testing.T, ctx context.Context, st store.Store, ids []*fleet.EnrollResponse, acked []float64) {
	t.Helper()
	for i, er := range ids {
		if acked[i] == 0 {
			continue
		}
		tg, err := st.Target(ctx, er.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		if tg.Status != nil {
			got = tg.Status.Metrics["seq"]
		}
		if got < acked[i] {
			t.Errorf("%s: stored report %v, but report %v was acknowledged: lost", er.ID, got, acked[i])
		}
	}
}
