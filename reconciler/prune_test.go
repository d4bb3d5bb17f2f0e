package reconciler

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// pruneRepo is manifestsFor(n) at commit id, the release r saying prune:
// false when keep is set, and without r when removed.
func pruneRepo(id string, n int, keep, removed bool) source.Revision {
	m := manifestsFor(n)
	if keep {
		m = strings.Replace(m, "  runtime: {path: /var/lib/m}\n", "  runtime: {path: /var/lib/m, stop: [systemctl, stop, m]}\n  prune: false\n", 1)
	}
	if removed {
		m = m[:strings.LastIndex(m, "---\n")]
	}
	return source.Revision{Commit: strings.Repeat(id, 40), FS: fstest.MapFS{"manifests/all.yaml": {Data: []byte(m)}}}
}

// pruneFixture is a reconciler over a fresh store with two prod targets.
type pruneFixture struct {
	t  *testing.T
	st store.Store
	r  *Reconciler
}

func newPruneFixture(t *testing.T) *pruneFixture {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	f := &pruneFixture{t: t, st: st}
	for _, id := range []string{"dev-1", "dev-2"} {
		f.enroll(id, "prod")
	}
	f.restart()
	return f
}

func (f *pruneFixture) enroll(id, env string) {
	f.t.Helper()
	if err := f.st.EnrollTarget(context.Background(), store.Target{ID: id, Name: id, Labels: map[string]string{"env": env}, CredHash: "h"}); err != nil {
		f.t.Fatal(err)
	}
}

// restart is a new reconciler loading the store, as after a restart.
func (f *pruneFixture) restart() {
	f.t.Helper()
	f.r = New(Options{Store: f.st})
	if err := f.r.Load(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func (f *pruneFixture) admit(rev source.Revision) {
	f.t.Helper()
	if err := f.r.Admit(context.Background(), rev); err != nil {
		f.t.Fatal(err)
	}
}

func (f *pruneFixture) reconcile() {
	f.t.Helper()
	if err := f.r.Reconcile(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

// want checks a target's stored desired state: the digest of r it lists
// ("" none) and the releases it keeps.
func (f *pruneFixture) want(step, target, digest string, keep ...string) {
	f.t.Helper()
	d, err := f.st.Desired(context.Background(), target)
	if err != nil {
		f.t.Fatalf("%s: desired state of %s: %v", step, target, err)
	}
	var ds fleet.DesiredState
	if err := json.Unmarshal(d.Body, &ds); err != nil {
		f.t.Fatalf("%s: %v", step, err)
	}
	got := ""
	for _, m := range ds.Models {
		if m.Release == "r" {
			got = m.Digest
		}
	}
	if got != digest || !slices.Equal(ds.Keep, keep) {
		f.t.Fatalf("%s: %s desires r at %q keeping %q, want %q keeping %q", step, target, got, ds.Keep, digest, keep)
	}
}

// events are the messages of the events of a type, oldest first.
func (f *pruneFixture) events(typ string) []string {
	evs, err := f.st.Events(context.Background(), fleet.EventFilter{Type: typ})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.Message)
	}
	slices.Sort(out)
	return out
}

// A release removed from the repository is withdrawn from every target's
// desired state, which agents act on by uninstalling it: ReleaseRemoved and
// ReleasePruned once each, and nothing kept.
func TestPruneRemovedRelease(t *testing.T) {
	f := newPruneFixture(t)
	f.admit(pruneRepo("a", 1, false, false))
	f.want("admitted", "dev-1", digestOf(1))
	f.want("admitted", "dev-2", digestOf(1))
	f.admit(pruneRepo("b", 1, false, true))
	f.reconcile()
	f.want("removed", "dev-1", "")
	f.want("removed", "dev-2", "")
	if got := f.events(manifests.EventReleasePruned); len(got) != 1 {
		t.Fatalf("ReleasePruned events %q, want one", got)
	}
	if got := f.events(manifests.EventReleaseRemoved); len(got) != 1 || strings.Contains(got[0], "kept") {
		t.Fatalf("ReleaseRemoved events %q, want one, not kept", got)
	}
	if _, err := f.st.Record(context.Background(), "r"); err == nil {
		t.Fatal("the removed release's record is still stored")
	}
}

// A target whose labels change so that no profile of the release selects
// it any more is withdrawn from the release like a removed one; the other
// target keeps it, and relabelling it back gives it back.
func TestPruneTargetLeavesProfiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		keep bool
		// what the target that left keeps
		kept []string
	}{
		{name: "prune", keep: false},
		{name: "prune false", keep: true, kept: []string{"r"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newPruneFixture(t)
			f.admit(pruneRepo("a", 1, tt.keep, false))
			f.want("admitted", "dev-1", digestOf(1))
			f.enroll("dev-1", "staging") // no longer env: prod
			f.reconcile()
			f.want("left", "dev-1", "", tt.kept...)
			f.want("left", "dev-2", digestOf(1))
			f.enroll("dev-1", "prod")
			f.reconcile()
			f.want("back", "dev-1", digestOf(1))
		})
	}
}

// prune: false on a Release: removed from the repository it stays on its
// targets (the desired states keep it, across a restart of the server),
// ReleaseRemoved says so and no ReleasePruned is recorded. Added back, it is
// managed again; removed again without prune: false, it is pruned.
func TestPruneFalseKeepsRemovedRelease(t *testing.T) {
	f := newPruneFixture(t)
	f.admit(pruneRepo("a", 1, true, false))
	if ds, _ := f.st.Desired(context.Background(), "dev-1"); !strings.Contains(string(ds.Body), `"stop":["systemctl","stop","m"]`) {
		t.Fatalf("desired state carries no stop command: %s", ds.Body)
	}
	f.want("admitted", "dev-1", digestOf(1)) // listed: not in the keep list too
	f.admit(pruneRepo("b", 1, true, true))
	f.reconcile()
	f.want("removed", "dev-1", "", "r")
	f.want("removed", "dev-2", "", "r")
	if got := f.events(manifests.EventReleasePruned); len(got) != 0 {
		t.Fatalf("ReleasePruned %q for a release with prune: false", got)
	}
	if got := f.events(manifests.EventReleaseRemoved); len(got) != 1 || !strings.Contains(got[0], "kept installed on its targets (prune: false)") {
		t.Fatalf("ReleaseRemoved events %q", got)
	}
	// A restart (or a new leader) keeps it too, without rewriting anything.
	f.restart()
	f.reconcile()
	f.want("restarted", "dev-1", "", "r")
	// Added back with prune: true, then removed again: pruned.
	f.admit(pruneRepo("c", 2, false, false))
	f.want("added back", "dev-1", digestOf(2))
	f.admit(pruneRepo("d", 2, false, true))
	f.reconcile()
	f.want("removed again", "dev-1", "")
	if got := f.events(manifests.EventReleasePruned); len(got) != 1 {
		t.Fatalf("ReleasePruned events %q, want one", got)
	}
}
