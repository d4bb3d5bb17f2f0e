package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// promotionRepo is one model in two releases: staging, and prod promoted
// after staging has run the same digest healthily for 1s.
func promotionRepo() source.Revision {
	const m = `apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: 1.0.1
  artifact: 127.0.0.1:5000/models/m@` + "DIGEST" + `
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: staging}
spec:
  selector:
    matchLabels: {env: staging}
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: prod}
spec:
  selector:
    matchLabels: {env: prod}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: gated}
spec:
  waves:
    - {percent: 100}
  policies: [promotion]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: staging}
spec:
  model: m
  targets: [{profile: staging}]
  runtime: {path: /var/lib/m}
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: prod}
spec:
  model: m
  targets: [{profile: prod}]
  rolloutPolicy: gated
  after: {release: staging, healthyFor: 1s}
  runtime: {path: /var/lib/m}
`
	return source.Revision{Commit: strings.Repeat("p", 40), FS: fstest.MapFS{
		"manifests/all.yaml": {Data: []byte(strings.ReplaceAll(m, "DIGEST", digestOf(1)))},
	}}
}

// TestPromotionGateLiftsOnceStagingHealthy admits a commit whose prod
// release waits for staging, reports staging healthy as the fleet API does,
// and lets Run re-evaluate the same commit until the gate lifts.
func TestPromotionGateLiftsOnceStagingHealthy(t *testing.T) {
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
	for id, env := range map[string]string{"stg-1": "staging", "prod-1": "prod"} {
		if err := st.EnrollTarget(ctx, store.Target{ID: id, Name: id, Labels: map[string]string{"env": env}, CredHash: "h-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	r := New(Options{Store: st, Interval: 50 * time.Millisecond})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	digests := func(target string) []string {
		t.Helper()
		d, err := st.Desired(ctx, target)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		var ds fleet.DesiredState
		if err := json.Unmarshal(d.Body, &ds); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ds.Models {
			out = append(out, m.Release+"="+m.Digest)
		}
		return out
	}
	release := func(name string) fleet.ReleaseInfo {
		t.Helper()
		rel, err := st.Release(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var info fleet.ReleaseInfo
		if err := json.Unmarshal(rel.Status, &info); err != nil {
			t.Fatal(err)
		}
		return info
	}
	denials := func() []fleet.Event {
		t.Helper()
		evs, err := st.Events(ctx, fleet.EventFilter{Type: "PolicyDenied"})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}

	// Staging has no live state yet: prod is denied and gets nothing.
	rev := promotionRepo()
	if err := r.Admit(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if info := release("prod"); info.Denied == "" || !strings.Contains(info.Denied, "promotion") {
		t.Fatalf("prod after first admission = %+v, want denied by promotion", info)
	}
	if evs := denials(); len(evs) != 1 || evs[0].Release != "prod" {
		t.Fatalf("PolicyDenied events = %+v", evs)
	}
	if got := digests("prod-1"); len(got) != 0 {
		t.Fatalf("prod-1 desired = %v, want no model", got)
	}
	if got := digests("stg-1"); len(got) != 1 || got[0] != "staging="+digestOf(1) {
		t.Fatalf("stg-1 desired = %v", got)
	}

	// The staging target reports healthy on the digest (as the fleet API's
	// status handler stores it); the next pass records HealthySince.
	now := time.Now().UTC()
	rep := fleet.StatusReport{Time: now, Releases: []fleet.ReleaseStatus{{Release: "staging", Phase: fleet.PhaseHealthy, Digest: digestOf(1)}}}
	if err := st.PutStatus(ctx, "stg-1", rep, now); err != nil {
		t.Fatal(err)
	}
	if err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	since := release("staging").HealthySince
	if since == nil {
		t.Fatalf("staging status after a healthy report = %+v, want HealthySince", release("staging"))
	}

	// Run re-evaluates the denied commit each interval; prod is admitted
	// once staging has been healthy for 1s.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(runCtx) }()
	stop := func() { cancel(); <-done }
	defer stop()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if got := digests("prod-1"); len(got) == 1 && got[0] == "prod="+digestOf(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prod-1 desired = %v after %s; prod = %+v", digests("prod-1"), time.Since(now), release("prod"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if waited := time.Since(*since); waited < time.Second {
		t.Fatalf("prod admitted %s after staging became healthy, want ≥ 1s", waited)
	}
	if info := release("prod"); info.Denied != "" {
		t.Fatalf("prod after promotion = %+v, want the denial cleared", info)
	}
	if got := release("staging").HealthySince; got == nil || !got.Equal(*since) {
		t.Fatalf("staging HealthySince moved from %s to %v while it stayed healthy", since, got)
	}
	if evs := denials(); len(evs) != 1 {
		t.Fatalf("%d PolicyDenied events for repeated evaluations of one commit, want 1: %+v", len(evs), evs)
	}
	evs, err := st.Events(ctx, fleet.EventFilter{Type: "ReleaseAdmitted"})
	if err != nil {
		t.Fatal(err)
	}
	admitted := 0
	for _, e := range evs {
		if e.Release == "prod" && e.Commit == rev.Commit {
			admitted++
		}
	}
	if admitted != 1 {
		t.Fatalf("ReleaseAdmitted events for prod = %d, want 1: %+v", admitted, evs)
	}
}
