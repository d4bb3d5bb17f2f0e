package history

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
)

// TestRunFlushHolds checks what Run's flush writes (maxHold): a point once
// its bucket has closed or it has been held a minute, a session's progress
// once a minute; Flush writes everything, and what was held adds up.
func TestRunFlushHolds(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	rep := fleet.StatusReport{Metrics: map[string]float64{"cpu_percent": 10}}
	stored := func() (rows, cpuN, sessions int64) {
		t.Helper()
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(cpu_n), 0) FROM metric_points`).Scan(&rows, &cpuN); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM presence`).Scan(&sessions); err != nil {
			t.Fatal(err)
		}
		return
	}
	flushAt := func(at time.Time, wantRows, wantN, wantSessions int64) {
		t.Helper()
		if err := h.flush(ctx, at); err != nil {
			t.Fatal(err)
		}
		if r, n, s := stored(); r != wantRows || n != wantN || s != wantSessions {
			t.Fatalf("flush at %s: %d points (cpu samples %d), %d sessions; want %d (%d), %d", at.Sub(t0), r, n, s, wantRows, wantN, wantSessions)
		}
	}
	h.Observe("dev-1", rep, t0)
	h.Observe("dev-1", rep, t0.Add(30*time.Second))
	flushAt(t0.Add(40*time.Second), 0, 0, 1) // the minute is open; a new session is written
	h.Observe("dev-1", rep, t0.Add(50*time.Second))
	flushAt(t0.Add(55*time.Second), 0, 0, 1)
	// The minute closed, and the hour point has been held a minute.
	flushAt(t0.Add(61*time.Second), 2, 6, 1)
	h.Observe("dev-1", rep, t0.Add(70*time.Second))
	flushAt(t0.Add(80*time.Second), 2, 6, 1)
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if r, n, _ := stored(); r != 3 || n != 8 {
		t.Fatalf("after Flush: %d points (cpu samples %d), want 3 (8)", r, n)
	}
	var last int64
	if err := db.QueryRowContext(ctx, `SELECT last_at FROM presence`).Scan(&last); err != nil || last != t0.Add(70*time.Second).UnixNano() {
		t.Fatalf("session last seen %v (%v), want %v", time.Unix(0, last).UTC(), err, t0.Add(70*time.Second))
	}
}

// TestJoinStoredInOneQuery: sessions new to this process, of several
// targets looked up together, join the newest stored session of their own
// target when it ended within offlineAfter, and no other.
func TestJoinStoredInOneQuery(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, err := Open(ctx, db, WithOfflineAfter(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		target      string
		start, last time.Duration
	}{
		{"joins", 0, 9 * time.Minute},
		{"joins", -time.Hour, -50 * time.Minute}, // older: not the newest
		{"gap", 0, 8 * time.Minute},              // ended 2 minutes before
		{"later", 11 * time.Minute, 12 * time.Minute},
	} {
		if _, err := db.ExecContext(ctx, `INSERT INTO presence (target, start_at, last_at) VALUES (?, ?, ?)`, r.target, t0.Add(r.start).UnixNano(), t0.Add(r.last).UnixNano()); err != nil {
			t.Fatal(err)
		}
	}
	start := t0.Add(10 * time.Minute)
	var ss []closedSession
	for _, id := range []string{"joins", "gap", "later", "none"} {
		ss = append(ss, closedSession{id, session{start: start.UnixNano(), last: start.Add(time.Minute).UnixNano()}})
	}
	ss = append(ss, closedSession{"gap", session{start: t0.Add(8*time.Minute + 30*time.Second).UnixNano(), known: true}})
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	starts, err := h.joinStored(ctx, tx, ss)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t0, start, start, start, t0.Add(8*time.Minute + 30*time.Second)}
	for i := range ss {
		if got := time.Unix(0, starts[i]).UTC(); !got.Equal(want[i]) {
			t.Errorf("session %d of %s starts %v, want %v", i, ss[i].target, got, want[i])
		}
	}
}

// TestHourPointsFromMinutes: only minute points are held; each flush adds
// them to their hours, also when one flush holds several minutes of one
// target's hour, or minutes of two hours.
func TestHourPointsFromMinutes(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	h, err := Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cpu := func(v float64) fleet.StatusReport {
		return fleet.StatusReport{Metrics: map[string]float64{"cpu_percent": v}}
	}
	type row struct {
		target      string
		res, bucket int64
		n           int64
		sum, lo, hi float64
	}
	stored := func() []row {
		t.Helper()
		rs, err := db.QueryContext(ctx, `SELECT target, res, bucket, cpu_n, cpu_sum, cpu_min, cpu_max FROM metric_points ORDER BY target, res, bucket`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		var out []row
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.target, &r.res, &r.bucket, &r.n, &r.sum, &r.lo, &r.hi); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		return out
	}
	u := func(d time.Duration) int64 { return t0.Add(d).Unix() }
	h.Observe("dev-1", cpu(10), t0.Add(-90*time.Second)) // 11:58
	h.Observe("dev-1", cpu(30), t0.Add(-30*time.Second)) // 11:59
	h.Observe("dev-1", cpu(5), t0.Add(10*time.Second))   // 12:00
	h.Observe("dev-2", cpu(7), t0.Add(-60*time.Second))  // 11:59
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h.Observe("dev-1", cpu(40), t0.Add(40*time.Second)) // 12:00 again
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	want := []row{
		{"dev-1", 60, u(-2 * time.Minute), 1, 10, 10, 10},
		{"dev-1", 60, u(-time.Minute), 1, 30, 30, 30},
		{"dev-1", 60, u(0), 2, 45, 5, 40},
		{"dev-1", 3600, u(-time.Hour), 2, 40, 10, 30},
		{"dev-1", 3600, u(0), 2, 45, 5, 40},
		{"dev-2", 60, u(-time.Minute), 1, 7, 7, 7},
		{"dev-2", 3600, u(-time.Hour), 1, 7, 7, 7},
	}
	if got := stored(); !slices.Equal(got, want) {
		t.Fatalf("stored points\n%+v\nwant\n%+v", got, want)
	}
}

// TestHeldAsAgg: a held point adds up as an agg does, whichever series its
// samples carry and in whatever order they first appear, merged or not.
func TestHeldAsAgg(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var h, h2 held
		var a agg
		for j := range 1 + rng.IntN(12) {
			var s sample
			for i := range nSeries {
				if rng.IntN(3) > 0 {
					s.v[i], s.ok[i] = float64(rng.IntN(100)-50), true
				}
			}
			a.add(s)
			if j%2 == 0 {
				h.add(s)
			} else {
				h2.add(s)
			}
		}
		h.merge(&h2)
		if got := h.agg(); got.n != a.n || got.sum != a.sum || got.min != a.min || got.max != a.max {
			t.Fatalf("held %+v\nagg   %+v", got, a)
		}
	}
}
