package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

// gateEvents are the GateChanged events a fleet saw, by message.
func (f *fakeFleet) gateEvents() []string {
	var out []string
	for _, e := range f.events {
		if e.Type == manifests.EventGateChanged {
			out = append(out, e.Reason+": "+e.Message)
		}
	}
	return out
}

// setMetrics makes every target report m now.
func (f *fakeFleet) setMetrics(m map[string]float64) {
	for n := range f.targets {
		f.report(n, m)
	}
}

// report makes target n send a report of m, distinct from its last one.
func (f *fakeFleet) report(n string, m map[string]float64) {
	t := f.targets[n]
	t.Metrics = m
	t.ReportedAt = t.ReportedAt.Add(time.Nanosecond)
}

func TestGates(t *testing.T) {
	good := map[string]float64{"error_rate": 0.001, "latency_ms": 100}
	spike := func(f *fakeFleet) {
		// One report of one target spikes; every other report is good.
		f.setMetrics(good)
		n := f.wave1(d2)[0]
		f.report(n, map[string]float64{"error_rate": 0.001, "latency_ms": 2000})
		f.advance(time.Minute)
		f.report(n, good)
	}
	for _, tc := range []struct {
		name   string
		gate   manifests.Gate
		during func(f *fakeFleet) // runs after the wave's targets are updated
		// want is the phase after the bake, reason its reason, event a
		// GateChanged message fragment that must have been recorded.
		want, reason, event string
	}{
		{name: "missing metric is no data, then fails the rollout",
			gate:   manifests.Gate{Metric: "error_rate", Max: ptr(0.01)},
			during: func(f *fakeFleet) { f.setMetrics(map[string]float64{"other": 1}) },
			want:   PhaseRolledBack, reason: ReasonGateNoData, event: "GateNoData: wave 1/2: gate error_rate: no data"},
		{name: "missing metric with onNoData pass goes on",
			gate:   manifests.Gate{Metric: "error_rate", Max: ptr(0.01), OnNoData: manifests.OnNoDataPass},
			during: func(f *fakeFleet) { f.setMetrics(nil) },
			want:   PhaseSucceeded, event: "gate error_rate: no data"},
		{name: "missing metric with onNoData pause pauses",
			gate:   manifests.Gate{Metric: "error_rate", Max: ptr(0.01), OnNoData: manifests.OnNoDataPause},
			during: func(f *fakeFleet) { f.setMetrics(nil) },
			want:   PhasePaused, reason: ReasonGateNoData, event: "gate error_rate: no data"},
		{name: "under minSamples is inconclusive",
			gate:   manifests.Gate{Metric: "error_rate", Max: ptr(0.01), MinSamples: 1000},
			during: func(f *fakeFleet) { f.setMetrics(good) },
			want:   PhaseRolledBack, reason: ReasonGateNoData, event: "gate error_rate: inconclusive"},
		{name: "a spike under mean passes",
			gate:   manifests.Gate{Metric: "latency_ms", Max: ptr(300), Aggregate: manifests.AggregateMean},
			during: spike,
			want:   PhaseSucceeded},
		{name: "a spike under max fails",
			gate:   manifests.Gate{Metric: "latency_ms", Max: ptr(300), Aggregate: manifests.AggregateMax},
			during: spike,
			want:   PhaseRolledBack, reason: ReasonGateFailed, event: "GateFailing: wave 1/2: gate latency_ms max=2000 > max 300 over"},
		{name: "a spike in one of many reports passes p95",
			gate:   manifests.Gate{Metric: "latency_ms", Max: ptr(300), Aggregate: manifests.AggregateP95},
			during: spike,
			want:   PhaseSucceeded},
		{name: "a sustained breach fails p95",
			gate:   manifests.Gate{Metric: "latency_ms", Max: ptr(300), Aggregate: manifests.AggregateP95},
			during: func(f *fakeFleet) { f.setMetrics(map[string]float64{"latency_ms": 400}) },
			want:   PhaseRolledBack, reason: ReasonGateFailed, event: "gate latency_ms p95=400 > max 300"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 4, manifests.RolloutPolicySpec{Waves: waves(10*time.Minute, 50, 100)})
			f.setMetrics(good)
			rollOutV1(t, f)
			f.policy.Spec.Gates = []manifests.Gate{tc.gate}
			if tc.gate.MinSamples == 0 {
				f.policy.Spec.Gates[0].MinSamples = 1
			}
			f.deploy(d2)
			f.step()
			tc.during(f)
			for range 40 {
				f.advance(time.Minute)
				if f.state.Phase != PhaseProgressing {
					break
				}
				if f.state.Wave == 0 && f.state.Reason != ReasonBaking && f.state.Reason != ReasonGateHolding && f.state.Reason != ReasonWaitingTargets {
					t.Fatalf("wave 1 reason %s", f.state.Reason)
				}
			}
			f.wantPhase(tc.want)
			if tc.reason != "" && f.state.Reason != tc.reason {
				t.Fatalf("reason %s (%s), want %s", f.state.Reason, f.state.Message, tc.reason)
			}
			if tc.event != "" && !strings.Contains(strings.Join(f.gateEvents(), "\n"), tc.event) {
				t.Fatalf("no GateChanged event with %q in:\n%s", tc.event, strings.Join(f.gateEvents(), "\n"))
			}
		})
	}
}

func TestGateHoldsTheWaveWithItsValue(t *testing.T) {
	f := newFleet(t, 4, manifests.RolloutPolicySpec{Waves: waves(10*time.Minute, 50, 100),
		Gates: []manifests.Gate{{Metric: "error_rate", Max: ptr(0.01), Aggregate: manifests.AggregateMax, MinSamples: 1}}})
	f.setMetrics(map[string]float64{"error_rate": 0})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	f.step()
	f.setMetrics(map[string]float64{"error_rate": 0.5})
	f.advance(time.Minute)
	f.advance(time.Minute)
	if f.state.Reason != ReasonGateHolding || !strings.Contains(f.state.Message, "gate error_rate max=0.5 > max 0.01 over") {
		t.Fatalf("state %s: %s", f.state.Reason, f.state.Message)
	}
}

func TestResumeAfterGatePauseGoesOn(t *testing.T) {
	f := newFleet(t, 4, manifests.RolloutPolicySpec{Waves: waves(10*time.Minute, 50, 100),
		Gates: []manifests.Gate{{Metric: "error_rate", Max: ptr(0.01), OnNoData: manifests.OnNoDataPause, MinSamples: 1}}})
	f.setMetrics(map[string]float64{"error_rate": 0})
	rollOutV1(t, f)
	f.deploy(d2)
	f.setMetrics(nil)
	for range 20 {
		f.advance(time.Minute)
	}
	f.wantPhase(PhasePaused)
	f.command = CommandResume
	f.advance(time.Minute)
	if f.state.Wave != 1 {
		t.Fatalf("resumed in wave %d, want 2 (%s)", f.state.Wave+1, f.state.Message)
	}
	f.setMetrics(map[string]float64{"error_rate": 0})
	for range 20 {
		f.advance(time.Minute)
	}
	f.wantPhase(PhaseSucceeded)
}

func TestEvaluate(t *testing.T) {
	var s GateStats
	for _, v := range []float64{1, 2, 3, 4, 100} {
		s.add(v)
	}
	g := manifests.Gate{Metric: "m", Max: ptr(50), MinSamples: 5}
	for agg, want := range map[string]float64{"mean": 22, "max": 100, "min": 1, "p95": 100} {
		g.Aggregate = agg
		if r := Evaluate(g, s); r.Value != want {
			t.Errorf("%s = %g, want %g", agg, r.Value, want)
		}
	}
	g.MinSamples = 6
	if r := Evaluate(g, s); r.Outcome != GateInconclusive {
		t.Errorf("outcome %s, want inconclusive", r.Outcome)
	}
	if r := Evaluate(g, GateStats{}); r.Outcome != GateNoData {
		t.Errorf("outcome %s, want no data", r.Outcome)
	}
	// The ring keeps the most recent samples for p95.
	var big GateStats
	for i := range 3 * maxRecent {
		big.add(float64(i))
	}
	if len(big.Recent) != maxRecent || big.Count != 3*maxRecent {
		t.Fatalf("ring %d count %d", len(big.Recent), big.Count)
	}
}
