package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
)

// TestStatusBatchCommit commits one batch by hand: two reports of one
// target (the one received last is stored, whatever their order in the
// batch, and both are acknowledged with their log entries kept), a report
// carrying facts, one without, and one of a target that is not enrolled
// (ErrNotFound for it alone).
func TestStatusBatchCommit(t *testing.T) {
	for name, dsn := range testenv.Databases("store") {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			db, err := sqldb.Open(ctx, dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			s, err := Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b", "c"} {
				if err := s.EnrollTarget(ctx, Target{ID: id, Name: id, CredHash: "h", Facts: fleet.Facts{Arch: "amd64"}}); err != nil {
					t.Fatal(err)
				}
			}
			t0 := time.Now().UTC().Truncate(time.Microsecond)
			write := func(id string, at time.Time, msg string, facts *fleet.Facts) *statusWrite {
				r := fleet.StatusReport{Time: at, Facts: facts, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Message: msg}},
					Log: []fleet.LogEntry{{Release: "r", Phase: fleet.PhaseHealthy, Message: msg}}}
				w := &statusWrite{ctx: ctx, id: id, at: at, logs: r.Log, done: make(chan error, 1)}
				r.Log = nil
				w.status = mustJSON(r)
				if facts != nil {
					w.facts = mustJSON(*facts)
				}
				return w
			}
			batch := []*statusWrite{
				write("a", t0.Add(2*time.Second), "a newer", nil),
				write("b", t0, "b with facts", &fleet.Facts{Arch: "arm64"}),
				write("a", t0.Add(time.Second), "a older", nil),
				write("x", t0, "not enrolled", nil),
				write("c", t0, "c", nil),
			}
			errs, err := s.statuses.commit(batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range errs {
				if want := batch[i].id == "x"; errors.Is(e, ErrNotFound) != want || (!want && e != nil) {
					t.Fatalf("report %d of %s: %v", i, batch[i].id, e)
				}
			}
			check := func(id, msg string, at time.Time, arch string, logs int) {
				t.Helper()
				tg, err := s.Target(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if tg.Status == nil || tg.Status.Releases[0].Message != msg || !tg.LastSeen.Equal(at) || !tg.UpdatedAt.Equal(at) || tg.Facts.Arch != arch {
					t.Fatalf("target %s: status %+v last seen %v updated %v facts %+v, want %q at %v arch %s", id, tg.Status, tg.LastSeen, tg.UpdatedAt, tg.Facts, msg, at, arch)
				}
				if log, err := s.Log(ctx, id, 10); err != nil || len(log) != logs {
					t.Fatalf("log of %s: %v %v, want %d entries", id, log, err, logs)
				}
			}
			check("a", "a newer", t0.Add(2*time.Second), "amd64", 2)
			check("b", "b with facts", t0, "arm64", 1)
			check("c", "c", t0, "amd64", 1)
			if log, err := s.Log(ctx, "x", 10); err != nil || len(log) != 0 {
				t.Fatalf("log of a target not enrolled: %v %v", log, err)
			}
		})
	}
}
