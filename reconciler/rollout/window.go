package rollout

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/cairn-dev/cairn/manifests"
)

// ZoneDevice is the UpdateWindow time zone meaning each target's own zone.
const ZoneDevice = "device"

// window answers whether targets may start an update at a time.
type window struct {
	sched    cron.Schedule
	duration time.Duration
	zone     string // "", "UTC", an IANA name or ZoneDevice
	zones    map[string]*time.Location
}

// newWindow parses an update window; a nil window is always open.
func newWindow(w *manifests.UpdateWindow) (*window, error) {
	if w == nil || w.Schedule == "" {
		return nil, nil
	}
	s, err := cron.ParseStandard(w.Schedule)
	if err != nil {
		return nil, fmt.Errorf("window schedule %q: %w", w.Schedule, err)
	}
	if w.Duration.Duration <= 0 {
		return nil, fmt.Errorf("window duration must be positive")
	}
	return &window{sched: s, duration: w.Duration.Duration, zone: w.TimeZone, zones: map[string]*time.Location{}}, nil
}

// location is the zone the window is read in for a target whose own zone
// is deviceZone. Unknown zones fall back to UTC.
func (w *window) location(deviceZone string) *time.Location {
	name := w.zone
	if name == ZoneDevice {
		name = deviceZone
	}
	if name == "" || name == "UTC" {
		return time.UTC
	}
	if l, ok := w.zones[name]; ok {
		return l
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		l = time.UTC
	}
	w.zones[name] = l
	return l
}

// Open reports whether the window is open at now for a target in
// deviceZone, and when not, when it opens next.
func (w *window) Open(now time.Time, deviceZone string) (bool, time.Time) {
	if w == nil {
		return true, time.Time{}
	}
	local := now.In(w.location(deviceZone))
	// The latest start s with s <= now < s+duration is the first activation
	// after now-duration, if it is not after now.
	if s := w.sched.Next(local.Add(-w.duration)); !s.After(local) {
		return true, time.Time{}
	}
	return false, w.sched.Next(local)
}
