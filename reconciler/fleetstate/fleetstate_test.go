package fleetstate_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
)

func TestOnline(t *testing.T) {
	now := time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		seen time.Time
		want bool
	}{
		{time.Time{}, false},
		{now, true},
		{now.Add(-3 * time.Minute), true},
		{now.Add(-3*time.Minute - time.Second), false},
	} {
		if got := fleetstate.Online(tc.seen, now, 3*time.Minute); got != tc.want {
			t.Errorf("Online(%v) = %v, want %v", tc.seen, got, tc.want)
		}
	}
}

func TestPhase(t *testing.T) {
	rs := func(ps ...string) []fleet.ReleaseStatus {
		var out []fleet.ReleaseStatus
		for _, p := range ps {
			out = append(out, fleet.ReleaseStatus{Phase: p})
		}
		return out
	}
	for _, tc := range []struct {
		in   []fleet.ReleaseStatus
		want string
	}{
		{nil, ""},
		{rs(fleet.PhaseHealthy, fleet.PhaseHealthy), fleet.PhaseHealthy},
		{rs(fleet.PhaseHealthy, fleet.PhaseDownloading), fleet.PhaseDownloading},
		{rs(fleet.PhaseDownloading, fleet.PhaseFailed), fleet.PhaseFailed},
		{rs("Unknown"), ""},
	} {
		if got := fleetstate.Phase(tc.in); got != tc.want {
			t.Errorf("Phase(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The stored body decodes to a desired state carrying the same tag, and
// equal models give equal tags.
func TestEncodeDesired(t *testing.T) {
	ms := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1"}}
	d := fleetstate.EncodeDesired("t1", ms)
	var ds fleet.DesiredState
	if err := json.Unmarshal(d.Body, &ds); err != nil || ds.ETag != d.ETag || ds.Target != "t1" || len(ds.Models) != 1 {
		t.Fatalf("body %s, %v", d.Body, err)
	}
	if fleetstate.ETag(ms) != d.ETag || fleetstate.ETag(nil) != fleetstate.EncodeDesired("t1", nil).ETag || fleetstate.ETag(nil) == d.ETag {
		t.Fatal("tags are not a function of the models")
	}
}

// A keep list changes the tag (agents must see it), none leaves it as ETag.
func TestKeepETag(t *testing.T) {
	ms := []fleet.DesiredModel{{Release: "r", Model: "m", Digest: "sha256:1"}}
	if fleetstate.KeepETag(ms, nil) != fleetstate.ETag(ms) || fleetstate.KeepETag(ms, []string{}) != fleetstate.ETag(ms) {
		t.Fatal("an empty keep list changed the tag")
	}
	a, b := fleetstate.KeepETag(ms, []string{"old"}), fleetstate.KeepETag(ms, []string{"older"})
	if a == fleetstate.ETag(ms) || a == b || a != fleetstate.KeepETag(ms, []string{"old"}) {
		t.Fatal("tags are not a function of models and keep list")
	}
}
