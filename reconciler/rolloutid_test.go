package reconciler

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// RolloutID names the stored rollout on a replica that does not lead: one
// that just started (waiting out a killed leader's lease) answers from
// what it loaded, before any pass of its own, and a follower from the
// store as the leader moves on. Lineage keys status reports by it, so an
// empty answer made rollouts indistinguishable (TestCrashRestart seed
// 42799: deployedTo edges without a rollout, reported during the lease
// wait after a restart).
func TestRolloutIDWhileFollowing(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st.EnrollTarget(ctx, store.Target{ID: "dev-1", Name: "dev-1", Labels: map[string]string{"env": "prod"}, CredHash: "h"})
	leader := New(Options{Store: st})
	if err := leader.Load(ctx); err != nil {
		t.Fatal(err)
	}
	pass := func(n int) string {
		t.Helper()
		if err := leader.Admit(ctx, repoAt(n)); err != nil {
			t.Fatal(err)
		}
		if err := leader.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		rec, err := st.Record(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		key := rec.Rollout.Key()
		if key == "" || leader.RolloutID("r") != key {
			t.Fatalf("v%d: leader's RolloutID = %q, stored rollout %q", n, leader.RolloutID("r"), key)
		}
		return key
	}
	v1 := pass(1)

	follower := New(Options{Store: st})
	if got := follower.RolloutID("r"); got != "" {
		t.Fatalf("before Load: %q", got)
	}
	if err := follower.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := follower.RolloutID("r"); got != v1 {
		t.Fatalf("after Load, no pass: RolloutID = %q, want %q", got, v1)
	}
	v2 := pass(2)
	if v2 == v1 {
		t.Fatalf("v2's rollout has v1's key %q", v1)
	}
	follower.followRollouts(ctx)
	if got := follower.RolloutID("r"); got != v2 {
		t.Fatalf("following: RolloutID = %q, want %q", got, v2)
	}
}
