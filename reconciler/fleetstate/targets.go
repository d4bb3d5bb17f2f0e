package fleetstate

import (
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Online reports whether a target last seen at lastSeen (zero: never) is
// online at now: seen within offlineAfter.
func Online(lastSeen, now time.Time, offlineAfter time.Duration) bool {
	return !lastSeen.IsZero() && now.Sub(lastSeen) <= offlineAfter
}

// Phase is a target's phase over its releases: Failed if any
// failed, else the least advanced one; Healthy when all are.
func Phase(rs []fleet.ReleaseStatus) string {
	order := map[string]int{fleet.PhaseFailed: 0, fleet.PhaseRolledBack: 1, fleet.PhasePending: 2, fleet.PhaseDownloading: 3,
		fleet.PhaseInstalling: 4, fleet.PhaseVerifying: 5, fleet.PhaseHealthy: 6}
	best, rank := "", 99
	for _, r := range rs {
		if o, ok := order[r.Phase]; ok && o < rank {
			best, rank = r.Phase, o
		}
	}
	return best
}

// TargetInfo turns a stored target into its status API form.
func TargetInfo(t store.Target, now time.Time, offlineAfter time.Duration) fleet.TargetInfo {
	ti := fleet.TargetInfo{ID: t.ID, Name: t.Name, Labels: t.Labels, Facts: t.Facts, EnrolledAt: t.EnrolledAt,
		State: t.State, PendingCredential: t.State == store.StateAccepted && t.PendingHash != ""}
	if !t.LastSeen.IsZero() {
		ls := t.LastSeen
		ti.LastSeen = &ls
		ti.Online = Online(ls, now, offlineAfter)
	}
	if t.Status != nil {
		ti.Releases = t.Status.Releases
		ti.Metrics = t.Status.Metrics
		ti.Phase = Phase(t.Status.Releases)
	}
	return ti
}
