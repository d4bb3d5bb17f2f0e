package lineage

import (
	"context"
	"errors"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// DeploymentsFromReport turns the transitions an agent's status report
// carries into deployment facts for RecordDeployment: for each release whose
// latest log entry in the report says it became Healthy, Failed or
// RolledBack (and is still in that phase), the model that became active
// (Healthy, RolledBack: the digest now running) or failed to (Failed: the
// digest being installed). The deployment is stamped with received, the
// server's receive time, never the device's clock (a device dated 2001 does
// not rewrite history); the agent's own log time is kept as DeviceTime. A
// zero received falls back to the device's time. Heartbeats without log
// entries give nothing, and restating the active model records nothing new;
// rollout names the rollout the deployment belongs to, when known.
func DeploymentsFromReport(target string, rep fleet.StatusReport, received time.Time, rollout func(release string) string) []DeploymentFacts {
	last := map[string]fleet.LogEntry{}
	for _, e := range rep.Log {
		if prev, ok := last[e.Release]; !ok || !e.Time.Before(prev.Time) {
			last[e.Release] = e
		}
	}
	var out []DeploymentFacts
	for _, rs := range rep.Releases {
		e, ok := last[rs.Release]
		if !ok || e.Phase != rs.Phase {
			continue
		}
		t := e.Time
		if t.IsZero() {
			t = rep.Time
		}
		if t.IsZero() && received.IsZero() {
			continue
		}
		f := DeploymentFacts{Target: target, Release: rs.Release, Start: t}
		if !received.IsZero() {
			f.Start, f.DeviceTime = received, t
		}
		if rollout != nil {
			f.Rollout = rollout(rs.Release)
		}
		switch rs.Phase {
		case fleet.PhaseHealthy:
			f.ModelDigest, f.Outcome = rs.Digest, OutcomeSucceeded
		case fleet.PhaseRolledBack:
			f.ModelDigest, f.Outcome = rs.Digest, OutcomeRolledBack
		case fleet.PhaseFailed:
			f.ModelDigest, f.Outcome, f.End = rs.Desired, OutcomeFailed, f.Start
		default:
			continue
		}
		if f.ModelDigest == "" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// RecordReport records the deployments an agent's status report carries
// (DeploymentsFromReport) into rec: what the fleet API calls on every
// POST /api/v1/targets/{id}/status, received at the server's clock.
// Sending the same report twice, or a heartbeat, records nothing new.
func RecordReport(ctx context.Context, rec Recorder, target string, rep fleet.StatusReport, received time.Time, rollout func(release string) string) error {
	var errs []error
	for _, f := range DeploymentsFromReport(target, rep, received, rollout) {
		if err := rec.RecordDeployment(ctx, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
