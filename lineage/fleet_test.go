package lineage

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

func TestDeploymentsFromReport(t *testing.T) {
	v1, v2 := digestOf('1'), digestOf('2')
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rollout := func(rel string) string { return rel + "/7" }
	for _, tc := range []struct {
		name string
		rep  fleet.StatusReport
		want []DeploymentFacts
	}{
		{"heartbeat", fleet.StatusReport{Time: at(9), Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: v1}}}, nil},
		{"activated", fleet.StatusReport{Time: at(9),
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: v2, Previous: v1}},
			Log:      []fleet.LogEntry{{Time: at(1), Release: "r", Phase: fleet.PhaseDownloading}, {Time: at(3), Release: "r", Phase: fleet.PhaseHealthy}}},
			[]DeploymentFacts{{Target: "dev-1", Release: "r", Rollout: "r/7", ModelDigest: v2, Start: at(3), Outcome: OutcomeSucceeded}}},
		{"failed", fleet.StatusReport{Time: at(9),
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseFailed, Digest: v1, Desired: v2}},
			Log:      []fleet.LogEntry{{Time: at(4), Release: "r", Phase: fleet.PhaseFailed}}},
			[]DeploymentFacts{{Target: "dev-1", Release: "r", Rollout: "r/7", ModelDigest: v2, Start: at(4), End: at(4), Outcome: OutcomeFailed}}},
		{"rolled back by the agent", fleet.StatusReport{Time: at(9),
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseRolledBack, Digest: v1, Desired: v2}},
			Log:      []fleet.LogEntry{{Time: at(5), Release: "r", Phase: fleet.PhaseRolledBack}}},
			[]DeploymentFacts{{Target: "dev-1", Release: "r", Rollout: "r/7", ModelDigest: v1, Start: at(5), Outcome: OutcomeRolledBack}}},
		{"still installing", fleet.StatusReport{Time: at(9),
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseInstalling, Digest: v1, Desired: v2}},
			Log:      []fleet.LogEntry{{Time: at(5), Release: "r", Phase: fleet.PhaseInstalling}}}, nil},
		{"log behind the status", fleet.StatusReport{Time: at(9),
			Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseDownloading, Digest: v1, Desired: v2}},
			Log:      []fleet.LogEntry{{Time: at(5), Release: "r", Phase: fleet.PhaseHealthy}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := DeploymentsFromReport("dev-1", tc.rep, time.Time{}, rollout); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestRecordDeploymentHeartbeat(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		v1, v2 := digestOf('1'), digestOf('2')
		for i, f := range []DeploymentFacts{
			{Target: "dev-1", Release: "r", ModelDigest: v1, Start: t0},
			{Target: "dev-1", Release: "r", ModelDigest: v1, Start: t0.Add(time.Minute)},                                 // restates v1: nothing
			{Target: "dev-1", Release: "r", ModelDigest: v1, Start: t0.Add(2 * time.Minute), Outcome: OutcomeRolledBack}, // still v1: nothing
			{Target: "dev-1", Release: "other", ModelDigest: v1, Start: t0.Add(2 * time.Minute)},                         // another release: recorded
			{Target: "dev-1", Release: "r", ModelDigest: v2, Start: t0.Add(3 * time.Minute)},                             // recorded
			{Target: "dev-1", Release: "r", ModelDigest: v1, Start: t0.Add(4 * time.Minute)},                             // back to v1: recorded
		} {
			if err := g.RecordDeployment(ctx, f); err != nil {
				t.Fatalf("deployment %d: %v", i, err)
			}
		}
		if n := count(t, g, "lineage_edges"); n != 4 {
			t.Fatalf("edges = %d, want 4", n)
		}
	})
}

func TestRecordReport(t *testing.T) {
	g := openSQLite(t)
	ctx := context.Background()
	v1 := digestOf('1')
	rep := fleet.StatusReport{Time: t0.Add(time.Hour),
		Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: v1}},
		Log:      []fleet.LogEntry{{Time: t0, Release: "r", Phase: fleet.PhaseHealthy}}}
	for range 2 {
		if err := RecordReport(ctx, g, "dev-1", rep, time.Time{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	rep.Log, rep.Time = nil, t0.Add(2*time.Hour) // a heartbeat
	if err := RecordReport(ctx, g, "dev-1", rep, time.Time{}, nil); err != nil {
		t.Fatal(err)
	}
	if n := count(t, g, "lineage_edges"); n != 1 {
		t.Fatalf("edges = %d, want 1", n)
	}
	a, err := g.At(ctx, "dev-1", t0.Add(time.Minute))
	if err != nil || len(a) != 1 || a[0].Model != v1 {
		t.Fatalf("At = %+v, %v", a, err)
	}
}

// An agent that uninstalls a release (pruned) logs Removed: the deployment
// ends, At after it reports nothing for the release (not the previous model
// either), At before still does, and a later install runs again.
func TestRecordReportRemoved(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		v1, v2 := digestOf('1'), digestOf('2')
		healthy := func(at time.Time, d string) fleet.StatusReport {
			return fleet.StatusReport{Time: at, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: d}},
				Log: []fleet.LogEntry{{Time: at, Release: "r", Phase: fleet.PhaseHealthy}}}
		}
		removed := fleet.StatusReport{Time: t0.Add(3 * time.Hour),
			Log: []fleet.LogEntry{{Time: t0.Add(3 * time.Hour), Release: "r", Phase: fleet.PhaseRemoved, Digest: v2}}}
		for _, rep := range []fleet.StatusReport{healthy(t0, v1), healthy(t0.Add(time.Hour), v2), removed, removed} {
			if err := RecordReport(ctx, g, "dev-1", rep, rep.Time, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			at   time.Time
			want string
		}{
			{t0.Add(2 * time.Hour), v2},
			{t0.Add(3*time.Hour - time.Second), v2},
			{t0.Add(3 * time.Hour), ""},
			{t0.Add(4 * time.Hour), ""},
		} {
			a, err := g.At(ctx, "dev-1", tc.at)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if len(a) == 1 {
				got = a[0].Model
			}
			if len(a) > 1 || got != tc.want {
				t.Fatalf("At(%s) = %+v, want %q", tc.at, a, tc.want)
			}
		}
		if err := RecordReport(ctx, g, "dev-1", healthy(t0.Add(5*time.Hour), v1), t0.Add(5*time.Hour), nil); err != nil {
			t.Fatal(err)
		}
		if a, err := g.At(ctx, "dev-1", t0.Add(6*time.Hour)); err != nil || len(a) != 1 || a[0].Model != v1 {
			t.Fatalf("At after reinstall = %+v, %v", a, err)
		}
	})
}

// A report is stamped with the server's receive time; the device's clock is
// kept as DeviceTime and never dates the deployment.
func TestDeploymentsFromReportReceiveTime(t *testing.T) {
	v1 := digestOf('1')
	dated2001 := time.Date(2001, 6, 1, 0, 0, 0, 0, time.UTC)
	rep := fleet.StatusReport{Time: dated2001,
		Releases: []fleet.ReleaseStatus{{Release: "r", Phase: fleet.PhaseHealthy, Digest: v1}},
		Log:      []fleet.LogEntry{{Time: dated2001, Release: "r", Phase: fleet.PhaseHealthy}}}
	got := DeploymentsFromReport("dev-1", rep, t0, nil)
	want := []DeploymentFacts{{Target: "dev-1", Release: "r", ModelDigest: v1, Start: t0, DeviceTime: dated2001, Outcome: OutcomeSucceeded}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

// A report the server recorded but whose answer the agent never got (the
// server killed, the request timed out) is sent again, received later: it
// records nothing new, whatever the outcome; a second failure of the same
// model (another device time) is recorded.
func TestRecordReportResent(t *testing.T) {
	backends(t, func(t *testing.T, g *Graph) {
		ctx := context.Background()
		v1, v2 := digestOf('1'), digestOf('2')
		report := func(at time.Time, phase, active, desired string) fleet.StatusReport {
			return fleet.StatusReport{Time: at, Releases: []fleet.ReleaseStatus{{Release: "r", Phase: phase, Digest: active, Desired: desired}},
				Log: []fleet.LogEntry{{Time: at, Release: "r", Phase: phase}}}
		}
		rollout := func(string) string { return "r|" + v2 + "|1" }
		for i, tc := range []struct {
			rep      fleet.StatusReport
			received time.Time
			edges    int
		}{
			{report(t0, fleet.PhaseHealthy, v1, v1), t0, 1},
			{report(t0.Add(time.Minute), fleet.PhaseFailed, v1, v2), t0.Add(time.Minute), 3},
			{report(t0.Add(time.Minute), fleet.PhaseFailed, v1, v2), t0.Add(2 * time.Minute), 3},       // resent
			{report(t0.Add(3*time.Minute), fleet.PhaseRolledBack, v1, v1), t0.Add(3 * time.Minute), 3}, // still v1
			{report(t0.Add(4*time.Minute), fleet.PhaseFailed, v1, v2), t0.Add(4 * time.Minute), 5},     // failed again
			{report(t0.Add(4*time.Minute), fleet.PhaseFailed, v1, v2), t0.Add(5 * time.Minute), 5},     // resent
			// resent to a replica whose clock is 90s behind the one that recorded it
			{report(t0.Add(4*time.Minute), fleet.PhaseFailed, v1, v2), t0.Add(150 * time.Second), 5},
		} {
			if err := RecordReport(ctx, g, "dev-1", tc.rep, tc.received, rollout); err != nil {
				t.Fatal(err)
			}
			if n := count(t, g, "lineage_edges"); n != tc.edges {
				t.Fatalf("report %d: %d edges, want %d", i, n, tc.edges)
			}
		}
	})
}
