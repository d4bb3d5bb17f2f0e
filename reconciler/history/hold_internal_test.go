package history

import (
	"context"
	"path/filepath"
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
