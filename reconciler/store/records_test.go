package store_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// testRecords: a typed record round-trips; records written by the previous
// code (record/testdata/v0) read back; a record that does not decode comes
// back stalled and is never overwritten.
func testRecords(t *testing.T, s store.Store) {
	since := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	rec := record.Release{Name: "r",
		Admitted: &record.Admitted{Commit: "c1", Release: manifests.Release{Metadata: manifests.ObjectMeta{Name: "r"}},
			Model: manifests.Model{Metadata: manifests.ObjectMeta{Name: "m"}, Spec: manifests.ModelSpec{Version: "1", Artifact: "r.example/m@sha256:" + hex64}},
			Unfit: map[string]string{"dev-9": "too small"}},
		Rollout: rollout.State{Release: "r", Phase: rollout.PhaseProgressing, Wave: 1, Started: since},
		Status: fleet.ReleaseInfo{ReleaseState: fleet.ReleaseState{Phase: rollout.PhaseProgressing, HealthySince: &since}, Targets: 3, Healthy: 2,
			Conditions: []fleet.Condition{{Type: "Ready", Status: "Unknown", Reason: "Progressing", LastTransitionTime: since}}},
	}
	if err := s.PutRecord(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, err := s.Record(ctx, "r")
	if err != nil || got.Err != nil {
		t.Fatal(err, got.Err)
	}
	if a, b := jsonOf(got.Admitted), jsonOf(rec.Admitted); a != b || !got.Rollout.Started.Equal(since) || got.Rollout.Wave != 1 ||
		got.Status.HealthySince == nil || !got.Status.HealthySince.Equal(since) || got.Status.Healthy != 2 || got.Status.Commit != "c1" || got.Status.Name != "r" {
		t.Fatalf("round trip: %+v", got)
	}

	for _, f := range []string{"healthy.json", "denied-keeps-v1.json", "never-admitted.json"} {
		b, err := os.ReadFile(filepath.Join("..", "record", "testdata", "v0", f))
		if err != nil {
			t.Fatal(err)
		}
		var raw struct {
			Name, Commit        string
			Spec, State, Status json.RawMessage
		}
		json.Unmarshal(b, &raw)
		name := "v0/" + f
		if err := s.PutRelease(ctx, store.Release{Name: raw.Name, Commit: raw.Commit, Spec: raw.Spec, State: raw.State, Status: raw.Status}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Record(ctx, raw.Name)
		if err != nil || got.Err != nil {
			t.Fatalf("%s: %v %v", name, err, got.Err)
		}
		if got.Status.Name != "r" || got.Status.Phase == "" {
			t.Fatalf("%s: %+v", name, got.Status)
		}
		if err := s.PutRecord(ctx, got); err != nil {
			t.Fatalf("%s: write back: %v", name, err)
		}
	}

	bad := store.Release{Name: "broken", Commit: "c9", Spec: []byte(`{"commit":`), State: []byte(`{}`), Status: []byte(`{}`)}
	if err := s.PutRelease(ctx, bad); err != nil {
		t.Fatal(err)
	}
	rs, err := s.Records(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var broken *record.Release
	for i := range rs {
		if rs[i].Name == "broken" {
			broken = &rs[i]
		}
	}
	if broken == nil || broken.Err == nil || len(broken.Status.Conditions) == 0 || broken.Status.Conditions[0].Reason != record.ReasonUndecodable {
		t.Fatalf("undecodable record: %+v", broken)
	}
	if err := s.PutRecord(ctx, *broken); err == nil {
		t.Fatal("PutRecord overwrote a record that does not decode")
	}
	if raw, _ := s.Release(ctx, "broken"); string(raw.Spec) != string(bad.Spec) {
		t.Fatalf("undecodable record changed: %s", raw.Spec)
	}
	if _, err := s.Record(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent record: %v", err)
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
