package reconciler

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/source"
)

// TestReadmitDue covers when the last admitted commit is evaluated again
// while a release is denied: only when an input its gates read changed, a
// time gate's deadline passed or readmitSafety passed, at most once an
// interval; never when nothing changed.
func TestReadmitDue(t *testing.T) {
	const interval = time.Second
	tests := []struct {
		name   string
		change func(r *Reconciler)
		ago    time.Duration // since the last re-admission
		want   bool
	}{
		{"nothing changed", func(*Reconciler) {}, 2 * interval, false},
		{"a target changed what plan reads", func(r *Reconciler) { r.fleet.gen++ }, 2 * interval, true},
		{"a target changed, within the interval", func(r *Reconciler) { r.fleet.gen++ }, interval / 2, false},
		{"an evaluation run reported", func(r *Reconciler) {
			r.noteEvaluations(map[string]bool{"run-1": true}, map[string]bool{})
		}, 2 * interval, true},
		{"a time gate's deadline passed", func(r *Reconciler) { r.gates.deadline = time.Now().Add(-time.Millisecond) }, 2 * interval, true},
		{"a time gate's deadline ahead", func(r *Reconciler) { r.gates.deadline = time.Now().Add(time.Hour) }, 2 * interval, false},
		{"the safety interval passed", func(*Reconciler) {}, readmitSafety, true},
		{"no release denied any more", func(r *Reconciler) { r.releases["prod"].denied = ""; r.fleet.gen++ }, 2 * interval, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reconciler{
				opts:     Options{Interval: interval},
				commit:   "c1",
				last:     &source.Revision{Commit: "c1"},
				releases: map[string]*releaseState{"prod": {denied: "promotion: staging not healthy"}},
				fleet:    newTargetCache(),
			}
			r.gates.inputs = r.admitInputsNow()
			tt.change(r)
			r.readmit = time.Now().Add(-tt.ago)
			if got := r.readmitDue() != nil; got != tt.want {
				t.Fatalf("readmitDue = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestAdmissionChanged: what plan reads of a target (labels, selector
// labels, class facts) bumps the admission inputs; a report-only fact
// such as free disk does not.
func TestAdmissionChanged(t *testing.T) {
	base := fleet.Target{Name: "d1", Labels: map[string]string{"site": "a"}, Facts: fleet.Facts{Arch: "arm64", Memory: 4 << 30, DiskFree: 1 << 30}}
	ct := &cachedTarget{labels: base.Labels, facts: &base.Facts, sel: map[string]string{"site": "a"}}
	tests := []struct {
		name   string
		change func(t *fleet.Target)
		want   bool
	}{
		{"same", func(*fleet.Target) {}, false},
		{"disk free only", func(t *fleet.Target) { t.Facts.DiskFree = 2 << 30 }, false},
		{"label", func(t *fleet.Target) { t.Labels = map[string]string{"site": "b"} }, true},
		{"arch", func(t *fleet.Target) { t.Facts.Arch = "amd64" }, true},
		{"memory", func(t *fleet.Target) { t.Facts.Memory = 8 << 30 }, true},
		{"accelerators", func(t *fleet.Target) { t.Facts.Accelerators = []string{"cuda"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nt := base
			nt.Labels = map[string]string{"site": "a"}
			tt.change(&nt)
			if got := admissionChanged(ct, nt, ct.sel); got != tt.want {
				t.Fatalf("admissionChanged = %v, want %v", got, tt.want)
			}
		})
	}
}
