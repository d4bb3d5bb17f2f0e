package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	d3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC) // a Monday

// fakeFleet simulates targets that install whatever Step desires, on the
// next tick, healthily unless told otherwise.
type fakeFleet struct {
	t       *testing.T
	now     time.Time
	policy  manifests.RolloutPolicy
	release manifests.Release
	model   string
	state   State
	targets map[string]*TargetState
	// fail makes a target fail the health check of a digest.
	fail map[string]string
	// hold keeps targets from reporting anything (slow download).
	hold    map[string]bool
	events  []Event
	out     Output
	command string
}

func newFleet(t *testing.T, n int, spec manifests.RolloutPolicySpec) *fakeFleet {
	f := &fakeFleet{t: t, now: t0, policy: manifests.RolloutPolicy{Spec: spec},
		release: manifests.Release{Metadata: manifests.ObjectMeta{Name: "rel"}},
		targets: map[string]*TargetState{}, fail: map[string]string{}, hold: map[string]bool{}}
	for i := range n {
		f.add(fmt.Sprintf("dev-%02d", i))
	}
	return f
}

func (f *fakeFleet) add(name string) *TargetState {
	ts := &TargetState{Name: name, Online: true, TimeZone: "UTC"}
	f.targets[name] = ts
	return ts
}

func (f *fakeFleet) deploy(digest string) { f.model = "reg.test/m@" + digest }

// step runs the engine once, then lets every online target act on its
// desired assignment.
func (f *fakeFleet) step() Output {
	f.t.Helper()
	var ts []TargetState
	for _, t := range f.targets {
		ts = append(ts, *t)
	}
	in := Input{Now: f.now, Release: f.release, Policy: f.policy, Targets: ts, Prev: f.state, Command: f.command}
	in.Model.Spec.Artifact = f.model
	f.command = ""
	f.out = Step(in)
	f.state = f.out.State
	f.events = append(f.events, f.out.Events...)
	for name, t := range f.targets {
		if !t.Online || f.hold[name] {
			continue
		}
		t.ReportedAt = f.now // every step is a report of its metrics
		want, ok := f.out.Desired[name]
		if !ok || want.Digest == t.Status.Digest {
			continue
		}
		if f.fail[name] == want.Digest {
			t.Status = fleet.ReleaseStatus{Release: "rel", Phase: fleet.PhaseFailed, Digest: t.Status.Digest, Desired: want.Digest, Message: "health check failed"}
			continue
		}
		t.Status = fleet.ReleaseStatus{Release: "rel", Phase: fleet.PhaseHealthy, Digest: want.Digest, Desired: want.Digest}
	}
	return f.out
}

func (f *fakeFleet) advance(d time.Duration) Output { f.now = f.now.Add(d); return f.step() }

// on counts targets whose desired and running digest is d.
func (f *fakeFleet) on(d string) int {
	n := 0
	for name, t := range f.targets {
		if f.out.Desired[name].Digest == d && t.Status.Digest == d {
			n++
		}
	}
	return n
}

func (f *fakeFleet) desiredCount(d string) int {
	n := 0
	for _, a := range f.out.Desired {
		if a.Digest == d {
			n++
		}
	}
	return n
}

func (f *fakeFleet) hasEvent(typ string) bool {
	return slices.ContainsFunc(f.events, func(e Event) bool { return e.Type == typ })
}

func (f *fakeFleet) wantPhase(p string) {
	f.t.Helper()
	if f.state.Phase != p {
		f.t.Fatalf("phase = %s (%s: %s), want %s", f.state.Phase, f.state.Reason, f.state.Message, p)
	}
}

func waves(bake time.Duration, percents ...int) []manifests.Wave {
	var w []manifests.Wave
	for _, p := range percents {
		w = append(w, manifests.Wave{Percent: p, Bake: manifests.Duration{Duration: bake}})
	}
	return w
}

func ptr(f float64) *float64 { return &f }

// rollOutV1 brings a fleet to Succeeded on d1.
func rollOutV1(t *testing.T, f *fakeFleet) {
	t.Helper()
	f.deploy(d1)
	for range 20 {
		f.advance(time.Hour)
		if f.state.Phase == PhaseSucceeded {
			f.events = nil
			return
		}
	}
	t.Fatalf("v1 did not succeed: %+v", f.state)
}

func TestFirstRolloutWavesWithBake(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(10*time.Minute, 20, 50, 100)})
	f.deploy(d1)
	f.step() // wave 1 starts: 2 targets get d1, the rest nothing
	if got := f.desiredCount(d1); got != 2 || len(f.out.Desired) != 2 {
		t.Fatalf("wave 1: %d targets desired d1, %d desired in all; want 2, 2", got, len(f.out.Desired))
	}
	f.step() // targets healthy: bake starts
	if f.state.Reason != ReasonBaking || f.out.RequeueAfter != 10*time.Minute {
		t.Fatalf("want baking with requeue 10m, got %s %v", f.state.Reason, f.out.RequeueAfter)
	}
	f.advance(9 * time.Minute)
	if f.state.Wave != 0 {
		t.Fatal("wave 2 started before the bake ended")
	}
	f.advance(time.Minute)
	if f.state.Wave != 1 || f.desiredCount(d1) != 5 {
		t.Fatalf("after bake: wave %d, %d on d1; want wave index 1, 5", f.state.Wave, f.desiredCount(d1))
	}
	f.advance(time.Second)
	f.advance(10 * time.Minute)
	f.advance(time.Second)
	f.advance(10 * time.Minute)
	f.wantPhase(PhaseSucceeded)
	if f.state.LastGood.Digest != d1 || f.on(d1) != 10 {
		t.Fatalf("lastGood %s, %d on d1", f.state.LastGood.Digest, f.on(d1))
	}
	if !f.hasEvent(manifests.EventRolloutDone) || !f.hasEvent(manifests.EventWaveStarted) {
		t.Fatalf("events: %+v", f.events)
	}
}

func TestSecondRolloutKeepsLastGoodOutsideWaves(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 30, 100)})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	if f.desiredCount(d2) != 3 || f.desiredCount(d1) != 7 {
		t.Fatalf("wave 1 of v2: %d d2, %d d1", f.desiredCount(d2), f.desiredCount(d1))
	}
	if f.state.LastGood.Digest != d1 {
		t.Fatalf("lastGood = %s", f.state.LastGood.Digest)
	}
}

func TestFailedTargetsRollBack(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 20, 100)})
	rollOutV1(t, f)
	for n := range f.targets {
		f.fail[n] = d2
	}
	f.deploy(d2)
	f.step() // wave 1 told to install d2
	f.step() // they report Failed
	f.step()
	f.wantPhase(PhaseRolledBack)
	if f.desiredCount(d1) != 10 {
		t.Fatalf("after rollback %d targets desire d1, want 10", f.desiredCount(d1))
	}
	if !f.hasEvent(manifests.EventRolledBack) || !f.hasEvent(manifests.EventRolloutFailed) {
		t.Fatalf("events: %+v", f.events)
	}
	if f.state.Reason != ReasonTargetsFailed || len(f.state.Failed) != 2 {
		t.Fatalf("reason %s failed %v", f.state.Reason, f.state.Failed)
	}
	// The RolledBack event names the targets sent back: wave 1's two.
	for _, e := range f.events {
		if e.Type == manifests.EventRolledBack && len(e.Targets) != 2 {
			t.Fatalf("RolledBack names %v, want wave 1's 2 targets", e.Targets)
		}
	}
	// LastGood stays pinned while the digest stays.
	f.advance(time.Hour)
	f.wantPhase(PhaseRolledBack)
	if f.state.LastGood.Digest != d1 || f.state.Target.Digest != d2 {
		t.Fatalf("state %+v", f.state)
	}
	// A new commit starts over from the pinned last good.
	delete(f.fail, "dev-00")
	for n := range f.targets {
		delete(f.fail, n)
	}
	f.deploy(d3)
	for range 10 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
	if f.on(d3) != 10 {
		t.Fatalf("%d on d3", f.on(d3))
	}
}

func (f *fakeFleet) sortedNames() []string {
	var ns []string
	for n := range f.targets {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

func (f *fakeFleet) wave1(d string) []string {
	var ns []string
	for n, a := range f.out.Desired {
		if a.Digest == d {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns
}

func TestAbortThresholdCounts(t *testing.T) {
	spec := manifests.RolloutPolicySpec{Waves: waves(time.Minute, 50, 100), Abort: &manifests.AbortPolicy{FailedPercent: 40, MinFailed: 2}}
	for _, tc := range []struct {
		failing int
		want    string
	}{{1, PhaseSucceeded}, {2, PhaseRolledBack}} {
		t.Run(fmt.Sprint(tc.failing), func(t *testing.T) {
			f := newFleet(t, 10, spec)
			rollOutV1(t, f)
			// Targets of wave 1 (by the engine's own order) fail.
			f.deploy(d2)
			f.step()
			w1 := f.wave1(d2)
			for _, n := range w1[:tc.failing] {
				f.targets[n].Status = fleet.ReleaseStatus{Phase: fleet.PhaseFailed, Digest: d1, Desired: d2}
				f.hold[n] = true
			}
			for range 10 {
				f.advance(time.Hour)
			}
			f.wantPhase(tc.want)
		})
	}
}

func TestOnFailurePauseThenResume(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 20, 100), OnFailure: manifests.OnFailurePause})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	bad := f.wave1(d2)[0]
	f.targets[bad].Status = fleet.ReleaseStatus{Phase: fleet.PhaseFailed, Digest: d1, Desired: d2}
	f.hold[bad] = true
	f.step()
	f.wantPhase(PhasePaused)
	if !f.hasEvent(manifests.EventRolloutFailed) || !f.hasEvent(manifests.EventRolloutPaused) {
		t.Fatalf("events %+v", f.events)
	}
	f.advance(time.Hour)
	f.wantPhase(PhasePaused)
	if f.desiredCount(d2) != 2 {
		t.Fatalf("paused rollout moved: %d desire d2", f.desiredCount(d2))
	}
	f.command = CommandResume
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
}
func TestSupersede(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Hour, 20, 60, 100)})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	f.advance(time.Second)
	f.advance(time.Hour) // wave 2 of d2 started
	f.step()
	onD2 := f.on(d2)
	if onD2 != 6 {
		t.Fatalf("%d on d2 before supersede, want 6", onD2)
	}
	f.deploy(d3)
	f.step()
	if !f.hasEvent(manifests.EventRolloutSuperseded) {
		t.Fatal("no superseded event")
	}
	// Every target has a desired state; those on d2 outside wave 1 of d3 keep it.
	if len(f.out.Desired) != 10 {
		t.Fatalf("%d targets with desired state, want 10", len(f.out.Desired))
	}
	if got := f.desiredCount(d2) + f.desiredCount(d3); got != 6 {
		// 2 in wave 1 (d3) + the other d2 targets (4 or more, as wave 1 of
		// d3 may take targets from either side).
		t.Logf("d2 %d, d3 %d, d1 %d", f.desiredCount(d2), f.desiredCount(d3), f.desiredCount(d1))
	}
	if f.desiredCount(d3) != 2 {
		t.Fatalf("%d desire d3, want 2", f.desiredCount(d3))
	}
	if f.state.LastGood.Digest != d1 {
		t.Fatalf("lastGood %s, want d1 (d2 never succeeded)", f.state.LastGood.Digest)
	}
	for range 10 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
	if f.on(d3) != 10 {
		t.Fatalf("%d on d3", f.on(d3))
	}
}

func TestSupersedeFirstRolloutLeavesNoTargetWithout(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Hour, 50, 100)})
	f.deploy(d1)
	f.step()
	f.step()
	f.deploy(d2)
	f.step()
	for n, t := range f.targets {
		if t.Status.Digest != "" {
			if _, ok := f.out.Desired[n]; !ok {
				f.t.Fatalf("%s runs %s but has no desired state", n, manifests.ShortDigest(t.Status.Digest))
			}
		}
	}
}

func TestLateJoinerJoinsItsWave(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Hour, 50, 100)})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	f.step()
	// Ten new targets enroll mid-rollout; those hashing into wave 1 get d2 at
	// once, the others nothing new (no last good on them yet: they get d1).
	for i := range 10 {
		f.add(fmt.Sprintf("new-%02d", i))
	}
	f.step()
	gotNew := 0
	for n, a := range f.out.Desired {
		if strings.HasPrefix(n, "new-") && a.Digest == d2 {
			gotNew++
		}
	}
	if gotNew == 0 || gotNew == 10 {
		t.Fatalf("%d of 10 late joiners got d2 in wave 1", gotNew)
	}
	for n := range f.targets {
		if _, ok := f.out.Desired[n]; !ok {
			t.Fatalf("%s has no desired state", n)
		}
	}
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
	if f.on(d2) != 20 {
		t.Fatalf("%d on d2, want 20", f.on(d2))
	}
}

func TestOfflineTargetCatchesUp(t *testing.T) {
	f := newFleet(t, 5, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 40, 100)})
	rollOutV1(t, f)
	f.targets["dev-03"].Online = false
	f.deploy(d2)
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseProgressing)
	if f.state.Reason != ReasonWaitingTargets {
		t.Fatalf("reason %s", f.state.Reason)
	}
	f.targets["dev-03"].Online = true
	f.step()
	f.step()
	f.wantPhase(PhaseSucceeded)
}

// A release monitor's rollback sends a succeeded rollout's targets back to
// the model good before it, once.
func TestRollbackAfterSuccess(t *testing.T) {
	f := newFleet(t, 4, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 100)})
	rollOutV1(t, f)
	if f.state.Previous.Digest != "" {
		t.Fatalf("a first rollout has no previous model: %+v", f.state.Previous)
	}
	f.command = CommandRollback
	f.step()
	if !f.hasEvent(manifests.EventCommandIgnored) {
		t.Fatal("rollback of a first rollout not reported as ignored")
	}
	f.deploy(d2)
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
	if f.state.Previous.Digest != d1 || f.state.LastGood.Digest != d2 {
		t.Fatalf("after v2: previous %s last good %s", f.state.Previous.Digest, f.state.LastGood.Digest)
	}
	f.command = CommandRollback
	f.step()
	f.wantPhase(PhaseRolledBack)
	if f.desiredCount(d1) != 4 || !f.hasEvent(manifests.EventRolledBack) || f.state.Reason != ReasonMonitor {
		t.Fatalf("rollback: %d on d1, reason %s, events %+v", f.desiredCount(d1), f.state.Reason, f.events)
	}
	f.advance(time.Hour)
	f.wantPhase(PhaseRolledBack)
	if f.desiredCount(d1) != 4 {
		t.Fatalf("rolled-back release drifted back to v2: %d on d1", f.desiredCount(d1))
	}
}

// Two rollouts of digests sharing their first 12 hex digits, started within
// one second, share an ID but not a Key; the empty state has neither.
func TestStateKeyIsUnique(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := State{Release: "r", Target: Assignment{Digest: "sha256:" + strings.Repeat("a", 12) + strings.Repeat("1", 52)}, Started: start}
	b := State{Release: "r", Target: Assignment{Digest: "sha256:" + strings.Repeat("a", 12) + strings.Repeat("2", 52)}, Started: start.Add(300 * time.Millisecond)}
	if a.ID() != b.ID() {
		t.Fatalf("IDs %s and %s differ: the collision this test is about is gone", a.ID(), b.ID())
	}
	if a.Key() == b.Key() {
		t.Fatalf("two rollouts share the key %s", a.Key())
	}
	retry := a
	retry.Started = start.Add(time.Millisecond)
	if retry.Key() == a.Key() {
		t.Fatal("a retry within the second kept the key")
	}
	if (State{Release: "r"}).Key() != "" {
		t.Fatal("a state with nothing rolled out has a key")
	}
}
