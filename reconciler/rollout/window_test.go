package rollout

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

func TestWindows(t *testing.T) {
	// Updates may start 02:00–05:00 in the window's zone.
	win := func(zone string) *manifests.UpdateWindow {
		return &manifests.UpdateWindow{Schedule: "0 2 * * *", Duration: manifests.Duration{Duration: 3 * time.Hour}, TimeZone: zone}
	}
	for _, tc := range []struct {
		name     string
		zone     string
		devZone  string
		openUTC  time.Time // first instant the window is open, in UTC
		closedAt time.Time // an instant it is closed
	}{
		{"UTC", "UTC", "Asia/Tokyo", time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC), time.Date(2026, 3, 3, 5, 0, 0, 0, time.UTC)},
		{"zone", "America/New_York", "UTC", time.Date(2026, 3, 3, 7, 0, 0, 0, time.UTC), time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)},
		{"device", ZoneDevice, "Asia/Tokyo", time.Date(2026, 3, 2, 17, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 20, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := newWindow(win(tc.zone))
			if err != nil {
				t.Fatal(err)
			}
			if open, _ := w.Open(tc.openUTC, tc.devZone); !open {
				t.Fatalf("closed at %s", tc.openUTC)
			}
			if open, _ := w.Open(tc.openUTC.Add(-time.Minute), tc.devZone); open {
				t.Fatalf("open just before %s", tc.openUTC)
			}
			if open, next := w.Open(tc.closedAt, tc.devZone); open || !next.Equal(tc.openUTC.Add(24*time.Hour)) {
				t.Fatalf("at %s: open=%v next=%s, want closed until %s", tc.closedAt, open, next.UTC(), tc.openUTC.Add(24*time.Hour))
			}

			f := newFleet(t, 3, manifests.RolloutPolicySpec{Waves: waves(0, 100), Window: win(tc.zone)})
			for _, ts := range f.targets {
				ts.TimeZone = tc.devZone
			}
			f.now = tc.closedAt
			f.deploy(d1)
			f.step()
			if len(f.out.Desired) != 0 || f.state.Reason != ReasonWaitingWindow {
				t.Fatalf("outside the window: desired %v reason %s", f.out.Desired, f.state.Reason)
			}
			if want := tc.openUTC.Add(24 * time.Hour).Sub(f.now); f.out.RequeueAfter != want {
				t.Fatalf("requeue %v, want %v", f.out.RequeueAfter, want)
			}
			f.now = tc.openUTC.Add(24 * time.Hour)
			f.step()
			f.step()
			f.wantPhase(PhaseSucceeded)
		})
	}
}

func TestDeviceWindowPerTarget(t *testing.T) {
	f := newFleet(t, 0, manifests.RolloutPolicySpec{Waves: waves(0, 100),
		Window: &manifests.UpdateWindow{Schedule: "0 2 * * *", Duration: manifests.Duration{Duration: time.Hour}, TimeZone: ZoneDevice}})
	f.add("tokyo").TimeZone = "Asia/Tokyo"
	f.add("paris").TimeZone = "Europe/Paris"
	f.now = time.Date(2026, 3, 2, 17, 30, 0, 0, time.UTC) // 02:30 in Tokyo, 18:30 in Paris
	f.deploy(d1)
	f.step()
	if _, ok := f.out.Desired["tokyo"]; !ok {
		t.Fatal("tokyo in its window got nothing")
	}
	if _, ok := f.out.Desired["paris"]; ok {
		t.Fatal("paris outside its window was updated")
	}
}

func TestMaxUnavailable(t *testing.T) {
	for _, tc := range []struct {
		max  string
		want int
	}{{"2", 2}, {"30%", 3}, {"1%", 1}} {
		t.Run(tc.max, func(t *testing.T) {
			f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(0, 100), MaxUnavailable: tc.max})
			for n := range f.targets {
				f.hold[n] = true // nobody finishes
			}
			f.deploy(d1)
			f.step()
			f.step()
			if got := f.desiredCount(d1); got != tc.want {
				t.Fatalf("%d targets updating at once, want %d", got, tc.want)
			}
			clear(f.hold)
			for range 12 {
				f.step()
			}
			f.wantPhase(PhaseSucceeded)
		})
	}
}
