package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/notify"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// TestAtomic: one reconcile step's writes — of the store, of the lineage
// graph and of the alert outbox, all in the store's database — commit
// together or not at all; replaying a committed step writes nothing twice;
// a write that fails inside the step undoes only itself; a deposed
// leader's step writes nothing.
func TestAtomic(t *testing.T) {
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			g, err := lineage.Open(ctx, s.DB(), lineage.WithoutMemoryIndex())
			if err != nil {
				t.Fatal(err)
			}
			ob, err := notify.OpenOutbox(ctx, s.DB())
			if err != nil {
				t.Fatal(err)
			}
			alerts := []manifests.Alert{{Metadata: manifests.ObjectMeta{Name: "ops"}}}
			alerts[0].Spec.Events = []string{manifests.EventWaveStarted}
			alerts[0].Spec.Webhook.URL = "http://127.0.0.1:1/hook"
			s.PushCommand(ctx, "r", "pause")
			cmds, err := s.Commands(ctx)
			if err != nil || len(cmds) != 1 {
				t.Fatalf("commands = %+v, %v", cmds, err)
			}
			at := time.Unix(1700000000, 0).UTC()
			step := func(ctx context.Context) error {
				if err := s.PutMeta(ctx, "k", []byte("v")); err != nil {
					return err
				}
				if err := s.ConsumeCommands(ctx, []int64{cmds[0].ID}); err != nil {
					return err
				}
				evs := []fleet.Event{{Type: manifests.EventWaveStarted, Release: "r", Message: "wave 2", Key: "r-1|WaveStarted|1", Time: at}}
				if err := s.AddEvents(ctx, evs); err != nil {
					return err
				}
				if err := g.RecordRollback(ctx, lineage.RollbackFacts{Release: "r", Rollout: "r-1", From: "sha256:" + hex64, Targets: []string{"t1"}, Time: at}); err != nil {
					return err
				}
				return ob.Enqueue(ctx, alerts, evs)
			}
			counts := func() (meta bool, events, commands, edges, deliveries int) {
				_, err := s.Meta(ctx, "k")
				meta = err == nil
				evs, _ := s.Events(ctx, fleet.EventFilter{})
				cs, _ := s.Commands(ctx)
				s.DB().QueryRowContext(ctx, `SELECT COUNT(*) FROM lineage_edges`).Scan(&edges)
				ds, _ := ob.List(ctx)
				return meta, len(evs), len(cs), edges, len(ds)
			}

			// A step that fails at its end leaves nothing.
			boom := errors.New("boom")
			if err := s.Atomic(ctx, func(ctx context.Context) error {
				if err := step(ctx); err != nil {
					return err
				}
				return boom
			}); !errors.Is(err, boom) {
				t.Fatalf("Atomic = %v, want boom", err)
			}
			if m, e, c, l, d := counts(); m || e != 0 || c != 1 || l != 0 || d != 0 {
				t.Fatalf("after a failed step: meta %v, %d events, %d commands, %d edges, %d deliveries; want nothing written, the command queued", m, e, c, l, d)
			}

			// A write failing inside a step undoes itself only (a
			// savepoint: on PostgreSQL the transaction goes on).
			if err := s.Atomic(ctx, func(ctx context.Context) error {
				tx, err := s.DB().BeginWrite(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO no_such_table VALUES (1)`); err == nil {
					t.Error("insert into a missing table succeeded")
				}
				tx.Rollback()
				return step(ctx)
			}); err != nil {
				t.Fatal(err)
			}
			m, e, c, l, d := counts()
			if !m || e != 1 || c != 0 || l == 0 || d != 1 {
				t.Fatalf("after a step: meta %v, %d events, %d commands, %d edges, %d deliveries", m, e, c, l, d)
			}

			// Replayed (a retried step), it writes nothing twice.
			if err := s.Atomic(ctx, step); err != nil {
				t.Fatal(err)
			}
			if m2, e2, c2, l2, d2 := counts(); m2 != m || e2 != e || c2 != c || l2 != l || d2 != d {
				t.Fatalf("replay wrote again: %d events, %d commands, %d edges, %d deliveries; was %d, %d, %d, %d", e2, c2, l2, d2, e, c, l, d)
			}

			// A deposed leader's step is refused whole, by the fence checked
			// in its transaction.
			lease, err := s.Lead(ctx)
			if err != nil || !lease.Held {
				t.Fatalf("lead: %+v %v", lease, err)
			}
			if _, err := s.DB().ExecContext(ctx, `UPDATE leader_lease SET holder = 'other', term = term + 1`); err != nil {
				t.Fatal(err)
			}
			err = s.Atomic(s.Fenced(ctx, lease), func(ctx context.Context) error {
				return s.PutMeta(ctx, "deposed", []byte("x"))
			})
			if !errors.Is(err, store.ErrFenced) {
				t.Fatalf("deposed step = %v, want ErrFenced", err)
			}
			if _, err := s.Meta(ctx, "deposed"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("a deposed leader's write was stored: %v", err)
			}
		})
	}
}
