package reconciler

import (
	"context"
	"encoding/json"
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
