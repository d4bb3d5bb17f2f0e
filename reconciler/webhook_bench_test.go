package reconciler

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// BenchmarkAdmitNewModel100k is the webhook's admission at 100,000 targets
// on SQLite, as bench/fleet runs it: the fleet runs the first model, three
// quarters of it just reported so (the inbox holds those reports), and each
// iteration admits a commit with a new model, whose pass writes and
// publishes every target's new desired state.
func BenchmarkAdmitNewModel100k(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	if err := st.Atomic(ctx, func(ctx context.Context) error {
		for i := range ids {
			ids[i] = fmt.Sprintf("dev-%06d", i)
			err := st.EnrollTarget(ctx, store.Target{ID: ids[i], Name: ids[i], CredHash: "h",
				Labels: map[string]string{"env": "prod", "site": fmt.Sprint("s", i%50)},
				Facts:  fleet.Facts{Arch: "arm64", OS: "linux", OSVersion: "12", Memory: 4 << 30, CPUs: 4}})
			if err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	published := 0
	r := New(Options{Store: st, Publish: func(ds []store.Desired) { published += len(ds) }, OfflineAfter: time.Hour})
	if err := r.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if err := r.Admit(ctx, repoAt(1)); err != nil {
		b.Fatal(err)
	}
	report := func(model int, share int) {
		for i, id := range ids {
			if i%4 < share {
				rep := fleet.StatusReport{Time: time.Now(), Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: digestOf(model)}},
					Metrics: map[string]float64{"cpu_percent": 20, "memory_bytes": 1 << 28, "temperature_c": 51, "error_rate": 0.001}}
				r.Observe(id, rep, time.Now().UTC())
			}
		}
	}
	report(1, 4)
	if err := r.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var cpu time.Duration
	for i := range b.N {
		b.StopTimer()
		report(i+1, 3)
		published = 0
		runtime.GC()
		b.StartTimer()
		cpu0 := cpuTime()
		if err := r.Admit(ctx, repoAt(i+2)); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
		if published != n {
			b.Fatalf("commit %d: %d desired states published, want %d", i+2, published, n)
		}
	}
	b.StopTimer()
	b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
}

// cpuTime is the user and system CPU time this process has used: under a
// loaded machine a steadier measure of a pass than its wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
