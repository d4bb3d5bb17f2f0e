package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

const banPolicy = `package cairn.no_nines

import rego.v1

deny contains msg if {
	input.model.spec.version == "1.0.9"
	msg := "version 1.0.9 is banned"
}
`

func repoAt(n int) source.Revision {
	return source.Revision{Commit: strings.Repeat(string(rune('a'+n)), 40), FS: fstest.MapFS{
		"manifests/all.yaml":  {Data: []byte(manifestsFor(n))},
		"policies/nines.rego": {Data: []byte(banPolicy)},
	}}
}

func TestPolicyDeniedKeepsPreviousVersion(t *testing.T) {
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
	var published []store.Desired
	r := New(Options{Store: st, Publish: func(ds []store.Desired) { published = append(published, ds...) }})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	desired := func() fleet.DesiredState {
		d, err := st.Desired(ctx, "dev-1")
		if err != nil {
			t.Fatal(err)
		}
		var ds fleet.DesiredState
		json.Unmarshal(d.Body, &ds)
		return ds
	}
	if err := r.Admit(ctx, repoAt(1)); err != nil {
		t.Fatal(err)
	}
	if ds := desired(); len(ds.Models) != 1 || ds.Models[0].Digest != digestOf(1) {
		t.Fatalf("after v1: %+v", ds)
	}
	if err := r.Admit(ctx, repoAt(9)); err != nil {
		t.Fatal(err)
	}
	if ds := desired(); len(ds.Models) != 1 || ds.Models[0].Digest != digestOf(1) {
		t.Fatalf("after denied v9: %+v, want v1 kept", ds)
	}
	rel, err := st.Release(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	var info fleet.ReleaseInfo
	json.Unmarshal(rel.Status, &info)
	if !strings.Contains(info.Denied, "1.0.9 is banned") || info.Digest != digestOf(1) {
		t.Fatalf("release status = %+v", info)
	}
	if got := ready(info.Conditions); got.Status != "False" || got.Reason != ReasonPolicyDenied {
		t.Fatalf("Ready = %+v", got)
	}
	evs, _ := st.Events(ctx, fleet.EventFilter{Type: "PolicyDenied"})
	if len(evs) != 1 || evs[0].Release != "r" {
		t.Fatalf("PolicyDenied events = %+v", evs)
	}
	// The next allowed commit rolls out and clears the denial.
	if err := r.Admit(ctx, repoAt(2)); err != nil {
		t.Fatal(err)
	}
	if ds := desired(); ds.Models[0].Digest != digestOf(2) {
		t.Fatalf("after v2: %+v", ds)
	}
	rel, _ = st.Release(ctx, "r")
	info = fleet.ReleaseInfo{}
	json.Unmarshal(rel.Status, &info)
	if info.Denied != "" {
		t.Fatalf("denial not cleared: %+v", info)
	}
	// A restart restores the admitted state without rewriting desired states.
	published = nil
	r2 := New(Options{Store: st, Publish: func(ds []store.Desired) { published = append(published, ds...) }})
	if err := r2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if len(published) != 0 {
		t.Fatalf("restart rewrote %d desired states", len(published))
	}
}

func ready(cs []fleet.Condition) fleet.Condition {
	for _, c := range cs {
		if c.Type == TypeReady {
			return c
		}
	}
	return fleet.Condition{}
}

// failingEvents fails AddEvents while fail is set.
type failingEvents struct {
	store.Store
	fail bool
}

func (f *failingEvents) AddEvents(ctx context.Context, evs []fleet.Event) error {
	if f.fail {
		return errors.New("disk full")
	}
	return f.Store.AddEvents(ctx, evs)
}

// A rejected commit's source conditions and CommitRejected event commit
// together: a failed write leaves neither and is retried with the commit;
// a rejection evaluated again (a retry, a restart) records its event once.
func TestRejectCommitAtomic(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sql, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	st := &failingEvents{Store: sql, fail: true}
	r := New(Options{Store: st})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	bad := source.Revision{Commit: strings.Repeat("b", 40), FS: fstest.MapFS{"manifests/all.yaml": {Data: []byte("kind: [")}}}
	rejected := func() []fleet.Event {
		t.Helper()
		evs, err := sql.Events(ctx, fleet.EventFilter{Type: "CommitRejected"})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	if err := r.Admit(ctx, bad); err == nil {
		t.Fatal("a rejection whose event could not be written returned nil")
	}
	if _, err := sql.Meta(ctx, "source-conditions"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("source conditions stored without their event: %v", err)
	}
	if evs := rejected(); len(evs) != 0 {
		t.Fatalf("events = %+v", evs)
	}
	st.fail = false
	// The commit stayed pending: the next pass (or fetch) rejects it again.
	r.mu.Lock()
	pending := r.pending
	r.mu.Unlock()
	if pending == nil || pending.Commit != bad.Commit {
		t.Fatalf("pending = %+v, want the rejected commit kept", pending)
	}
	for range 2 {
		if err := r.Admit(ctx, bad); err != nil {
			t.Fatal(err)
		}
	}
	// A restart evaluates it again.
	r2 := New(Options{Store: st})
	if err := r2.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r2.Admit(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if evs := rejected(); len(evs) != 1 || evs[0].Commit != bad.Commit || evs[0].Reason != ReasonValidationFailed {
		t.Fatalf("CommitRejected events = %+v, want one", evs)
	}
	b, err := sql.Meta(ctx, "source-conditions")
	if err != nil || !strings.Contains(string(b), ReasonValidationFailed) {
		t.Fatalf("source conditions = %s, %v", b, err)
	}
}
