// Command dashboard-bench fills a SQLite state database with 100,000
// reporting targets and prints the server time of the dashboard's fleet page
// (first page, needs attention first; a label filter; a text search) against
// the 300 ms goal, and the cost of recording one status report per target
// in the metrics history.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/dashboard"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/store"
)

func main() {
	targets := flag.Int("targets", 100_000, "targets")
	runs := flag.Int("runs", 30, "requests per page kind")
	dbPath := flag.String("db", "", "SQLite file (default: a temporary one)")
	flag.Parse()
	if err := run(*targets, *runs, *dbPath); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard-bench:", err)
		os.Exit(1)
	}
}

func run(n, runs int, dbPath string) error {
	ctx := context.Background()
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "dashboard-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "cairn.db")
	}
	db, err := sqldb.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		return err
	}
	hist, err := history.Open(ctx, db)
	if err != nil {
		return err
	}
	t0 := time.Now()
	now := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	digest := "sha256:" + strings.Repeat("ab", 32)
	phases := []string{fleet.PhaseHealthy, fleet.PhaseHealthy, fleet.PhaseHealthy, fleet.PhaseHealthy, fleet.PhaseDownloading, fleet.PhaseFailed}
	for i := range n {
		name := fmt.Sprintf("dev-%06d", i)
		labels := map[string]string{"site": fmt.Sprintf("site-%03d", i%200), "env": []string{"prod", "staging", "lab"}[i%3]}
		if err := st.EnrollTarget(ctx, store.Target{ID: name, Name: name, Labels: labels, CredHash: name, Facts: fleet.Facts{Arch: "arm64", OS: "linux"}}); err != nil {
			return err
		}
		at := now.Add(-time.Duration(rng.IntN(600)) * time.Second)
		rep := fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "classifier", Phase: phases[rng.IntN(len(phases))], Digest: digest}},
			Metrics: map[string]float64{"cpu_percent": rng.Float64() * 100, "memory_bytes": 1 << 30, "temperature_c": 40 + rng.Float64()*30, "uptime_s": 86400}}
		if err := st.PutStatus(ctx, name, rep, at); err != nil {
			return err
		}
		hist.Observe(name, rep, at)
	}
	fmt.Printf("filled %d targets with a status each in %s\n", n, time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()
	if err := hist.Flush(ctx); err != nil {
		return err
	}
	flush := time.Since(t1)
	var points int
	db.QueryRowContext(ctx, `SELECT COUNT(*) FROM metric_points`).Scan(&points)
	fmt.Printf("history: first report of each of %d targets flushed in %s (%.1f µs per report), %d stored points\n",
		n, flush.Round(time.Millisecond), float64(flush.Microseconds())/float64(n), points)
	// The steady state: the next report of every target, 30 s later, adds
	// to the same buckets and extends known sessions.
	for i := range n {
		hist.Observe(fmt.Sprintf("dev-%06d", i), fleet.StatusReport{Metrics: map[string]float64{"cpu_percent": 50, "memory_bytes": 1 << 30}}, now.Add(30*time.Second))
	}
	t1 = time.Now()
	if err := hist.Flush(ctx); err != nil {
		return err
	}
	flush = time.Since(t1)
	fmt.Printf("history: next report of each target flushed in %s (%.1f µs per report): at one report per target every 30 s, %.0f%% of one core\n",
		flush.Round(time.Millisecond), float64(flush.Microseconds())/float64(n), 100*flush.Seconds()/30)

	d, err := dashboard.New(dashboard.Config{Store: st, History: hist, AdminToken: "bench-admin", OfflineAfter: 5 * time.Minute})
	if err != nil {
		return err
	}
	t2 := time.Now()
	if err := d.Refresh(ctx); err != nil {
		return err
	}
	fmt.Printf("dashboard: first load of %d targets into the fleet cache in %s (once at start)\n", n, time.Since(t2).Round(time.Millisecond))
	// A session through the real login form.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {"bench-admin"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	d.ServeHTTP(rec, req)
	cookie := rec.Result().Cookies()
	if rec.Code != http.StatusSeeOther || len(cookie) == 0 {
		return fmt.Errorf("login: %d", rec.Code)
	}
	const goal = 300 * time.Millisecond
	for _, page := range []struct{ name, path string }{
		{"fleet page 1", "/"},
		{"fleet, label site=site-042", "/?label=site%3Dsite-042"},
		{"fleet, text search", "/?q=dev-0999"},
		{"fleet page 100", "/?page=100"},
	} {
		var times []time.Duration
		size := 0
		for range runs {
			req := httptest.NewRequest("GET", page.path, nil)
			req.AddCookie(cookie[0])
			rec := httptest.NewRecorder()
			t := time.Now()
			d.ServeHTTP(rec, req)
			times = append(times, time.Since(t))
			if rec.Code != http.StatusOK {
				return fmt.Errorf("%s: %d", page.path, rec.Code)
			}
			size = rec.Body.Len()
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		p50, p99 := times[len(times)/2], times[len(times)*99/100]
		verdict := "ok"
		if p99 > goal {
			verdict = "OVER GOAL"
		}
		fmt.Printf("%-28s p50 %7.2f ms  p99 %7.2f ms  (%.3f of the %s goal, %d KiB)  %s\n", page.name, ms(p50), ms(p99), float64(p99)/float64(goal), goal, size>>10, verdict)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
