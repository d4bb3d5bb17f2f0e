package reconciler

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// countingStore counts the full target rows a sync reads.
type countingStore struct {
	store.Store
	read int
}

func (c *countingStore) TargetsByID(ctx context.Context, ids []string) ([]store.Target, error) {
	c.read += len(ids)
	return c.Store.TargetsByID(ctx, ids)
}

// TestObserveUpdatesFleetWithoutStoreRead: a report handed over by Observe
// is what the next pass sees, and its row is not read again from the store;
// a report stored by another replica (newer, not observed) is read; an
// observed report older than the stored one is ignored; a deleted target
// leaves the fleet.
func TestObserveUpdatesFleetWithoutStoreRead(t *testing.T) {
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
	cs := &countingStore{Store: st}
	for _, id := range []string{"dev-1", "dev-2"} {
		st.EnrollTarget(ctx, store.Target{ID: id, Name: id, Labels: map[string]string{"env": "prod"}, CredHash: "h-" + id})
	}
	r := New(Options{Store: cs})
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.fleet.targets) != 2 || cs.read != 2 {
		t.Fatalf("first sync: %d targets, %d rows read; want 2, 2", len(r.fleet.targets), cs.read)
	}
	// Same labels and facts: one shared map each.
	a, b := r.fleet.targets["dev-1"], r.fleet.targets["dev-2"]
	if reflect.ValueOf(a.sel).Pointer() != reflect.ValueOf(b.sel).Pointer() || reflect.ValueOf(a.labels).Pointer() != reflect.ValueOf(b.labels).Pointer() || a.facts != b.facts {
		t.Error("targets with the same labels and facts do not share their label maps and facts")
	}
	report := func(phase string) fleet.StatusReport {
		return fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "r", Phase: phase}}, Facts: &fleet.Facts{Arch: "arm64", OS: "linux"}}
	}
	phase := func(id string) string {
		ct := r.fleet.targets[id]
		if ct == nil || ct.status == nil || len(ct.status.Releases) == 0 {
			return ""
		}
		return ct.status.Releases[0].Phase
	}

	// Stored and observed here: seen, not read back.
	at := time.Now().UTC()
	if err := st.PutStatus(ctx, "dev-1", report(fleet.PhaseHealthy), at); err != nil {
		t.Fatal(err)
	}
	r.Observe("dev-1", report(fleet.PhaseHealthy), at)
	cs.read = 0
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	if phase("dev-1") != fleet.PhaseHealthy || !r.fleet.targets["dev-1"].lastSeen.Equal(at) {
		t.Errorf("observed report not in the fleet: phase %q, last seen %v", phase("dev-1"), r.fleet.targets["dev-1"].lastSeen)
	}
	if got := r.fleet.targets["dev-1"].sel["arch"]; got != "arm64" {
		t.Errorf("observed facts not in the selector labels: arch=%q", got)
	}
	if cs.read != 0 {
		t.Errorf("%d rows read back from the store, want 0", cs.read)
	}

	// Stored by another replica: read.
	if err := st.PutStatus(ctx, "dev-2", report(fleet.PhaseFailed), time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	if phase("dev-2") != fleet.PhaseFailed || cs.read != 1 {
		t.Errorf("report stored elsewhere: phase %q after %d rows read, want Failed after 1", phase("dev-2"), cs.read)
	}

	// An observed report older than the stored one loses.
	later := time.Now().UTC()
	st.PutStatus(ctx, "dev-1", report(fleet.PhaseInstalling), later)
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	r.Observe("dev-1", report(fleet.PhaseHealthy), at)
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	if phase("dev-1") != fleet.PhaseInstalling {
		t.Errorf("an older observed report replaced the stored one: phase %q", phase("dev-1"))
	}

	// Deleted: out of the fleet, and a late observed report does not bring it back.
	if err := st.SetTargetAuth(ctx, "dev-2", store.StateDeleted, "", ""); err != nil {
		t.Fatal(err)
	}
	r.Observe("dev-2", report(fleet.PhaseHealthy), time.Now().UTC().Add(time.Second))
	if err := r.syncTargets(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.fleet.targets["dev-2"]; ok || len(r.fleet.order) != 1 {
		t.Errorf("deleted target still in the fleet: order %v", r.fleet.order)
	}
}

// TestOfflineOnceWhenQuiet: a target that goes quiet is named offline by
// the first pass after offlineAfter, not again by the next; one never seen
// online, or back online, is not.
func TestOfflineOnceWhenQuiet(t *testing.T) {
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	r := &Reconciler{fleet: newTargetCache(), opts: Options{OfflineAfter: time.Minute}}
	for id, seen := range map[string]time.Duration{"a": 0, "b": 0, "never": -time.Hour} {
		r.fleet.targets[id] = &cachedTarget{lastSeen: now.Add(seen)}
		r.fleet.order = append(r.fleet.order, id)
	}
	slices.Sort(r.fleet.order)
	if evs := r.offline(now); len(evs) != 0 {
		t.Fatalf("at the start: %+v, want no event", evs)
	}
	r.fleet.targets["b"].lastSeen = now.Add(2 * time.Minute)
	evs := r.offline(now.Add(2 * time.Minute))
	if len(evs) != 1 || !slices.Equal(evs[0].Targets, []string{"a"}) {
		t.Fatalf("a quiet: %+v, want one event naming a", evs)
	}
	if evs := r.offline(now.Add(3 * time.Minute)); len(evs) != 0 {
		t.Fatalf("a still quiet: %+v, want no second event", evs)
	}
}
