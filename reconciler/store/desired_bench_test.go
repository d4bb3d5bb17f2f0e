package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPutDesired100k writes a new desired state for each of 100,000
// targets, every one the same model as a webhook's pass writes them (one
// head a target, one shared rest), and reads them back as a follower's
// sync does; on SQLite, and on PostgreSQL when CAIRN_TEST_POSTGRES_URL is
// set.
func BenchmarkPutDesired100k(b *testing.B) {
	dsns := map[string]string{"sqlite": filepath.Join(b.TempDir(), "s.db")}
	if u := os.Getenv("CAIRN_TEST_POSTGRES_URL"); u != "" {
		url, drop, err := sqldb.CreateDatabase(ctx, u, "bench_desired")
		if err != nil {
			b.Fatal(err)
		}
		defer drop()
		dsns["postgres"] = url
	}
	for name, dsn := range dsns {
		b.Run(name, func(b *testing.B) {
			db, err := sqldb.Open(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			s, err := store.Open(ctx, db)
			if err != nil {
				b.Fatal(err)
			}
			const n = 100_000
			states := func(k int) []store.Desired {
				etag := fmt.Sprintf("%024x", k)
				rest := `"models":[{"release":"r","model":"m","version":"1.0.` + fmt.Sprint(k) + `","artifact":"127.0.0.1:7480/models/m@sha256:` +
					strings.Repeat("0", 63) + fmt.Sprint(k%10) + `","digest":"sha256:` + strings.Repeat("0", 63) + fmt.Sprint(k%10) + `","rollout":"r-` + fmt.Sprint(k) + `","runtime":{"path":"/var/lib/m"}}]}`
				ds := make([]store.Desired, n)
				for i := range ds {
					id := fmt.Sprintf("dev-%06d", i)
					ds[i] = store.Desired{Target: id, ETag: etag, Head: `{"target":"` + id + `","etag":"` + etag + `",`, Rest: rest}
				}
				return ds
			}
			if _, err := s.PutDesired(ctx, states(0)); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				b.StopTimer()
				ds := states(i + 1)
				b.StartTimer()
				rev, err := s.PutDesired(ctx, ds)
				if err != nil {
					b.Fatal(err)
				}
				read := 0
				if err := s.EachDesiredSince(context.Background(), rev-1, func(d store.Desired) error { read++; return nil }); err != nil || read != n {
					b.Fatalf("read back %d, %v", read, err)
				}
			}
			b.StopTimer()
			b.ReportMetric((cpuTime()-cpu0).Seconds()*1e3/float64(b.N), "cpu-ms/op")
		})
	}
}
