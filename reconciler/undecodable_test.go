package reconciler

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// A stored record that does not decode stalls its release with a condition
// that says so; neither a pass nor a new commit overwrites it, and its
// targets keep what they run of it.
func TestUndecodableRecordStalls(t *testing.T) {
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
	bad := store.Release{Name: "r", Commit: "c0", Spec: []byte(`{"commit":"c0","release":`), State: []byte(`{}`), Status: []byte(`{}`)}
	if err := st.PutRelease(ctx, bad); err != nil {
		t.Fatal(err)
	}
	r := New(Options{Store: st})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Admit(ctx, repoAt(1)); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := st.Release(ctx, "r")
	if err != nil || string(raw.Spec) != string(bad.Spec) {
		t.Fatalf("record overwritten: %s, %v", raw.Spec, err)
	}
	rec, _ := st.Record(ctx, "r")
	var stalled bool
	for _, c := range rec.Status.Conditions {
		stalled = stalled || c.Type == TypeStalled && c.Reason == record.ReasonUndecodable
	}
	if rec.Err == nil || !stalled {
		t.Fatalf("status %+v: want Stalled %s", rec.Status, record.ReasonUndecodable)
	}
	// Nothing of it is rolled out, and nothing uninstalled: the desired
	// state keeps what its targets run.
	d, err := st.Desired(ctx, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	var ds fleet.DesiredState
	if json.Unmarshal(d.Body, &ds) != nil || len(ds.Models) > 0 || len(ds.Keep) != 1 || ds.Keep[0] != "r" {
		t.Fatalf("desired state of a stalled release's target: %s, want no models and r kept", d.Body)
	}
}
