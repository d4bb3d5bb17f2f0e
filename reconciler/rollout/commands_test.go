package rollout

import (
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

func TestOperatorCommands(t *testing.T) {
	f := newFleet(t, 10, manifests.RolloutPolicySpec{Waves: waves(time.Hour, 20, 100)})
	rollOutV1(t, f)
	f.deploy(d2)
	f.step()
	f.command = CommandPause
	f.step()
	f.wantPhase(PhasePaused)
	f.advance(2 * time.Hour)
	if f.state.Wave != 0 {
		t.Fatal("paused rollout advanced a wave")
	}
	f.command = CommandResume
	f.step()
	f.wantPhase(PhaseProgressing)
	f.command = CommandAbort
	f.step()
	f.wantPhase(PhaseAborted)
	if f.desiredCount(d1) != 10 || !f.hasEvent(manifests.EventRolloutAborted) {
		t.Fatalf("abort: %d on d1, events %+v", f.desiredCount(d1), f.events)
	}
	f.command = CommandPause
	f.step()
	if !f.hasEvent(manifests.EventCommandIgnored) {
		t.Fatal("pause of an aborted rollout not reported as ignored")
	}
	oldID := f.state.ID()
	f.now = f.now.Add(time.Second)
	f.command = CommandRetry
	f.events = nil
	f.step()
	f.wantPhase(PhaseProgressing)
	if f.state.ID() == oldID {
		t.Fatal("retry kept the rollout ID")
	}
	// The new attempt announces its first wave, as a new rollout does
	// (TestCrashRestart counts every wave's start once per attempt).
	if !f.hasEvent(manifests.EventRolloutRetried) || !f.hasEvent(manifests.EventWaveStarted) {
		t.Fatalf("retry: events %+v, want RolloutRetried and WaveStarted", f.events)
	}
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
}

func TestRetryIgnoresStaleFailures(t *testing.T) {
	f := newFleet(t, 4, manifests.RolloutPolicySpec{Waves: waves(time.Minute, 50, 100)})
	rollOutV1(t, f)
	f.fail["dev-00"], f.fail["dev-01"], f.fail["dev-02"], f.fail["dev-03"] = d2, d2, d2, d2
	f.deploy(d2)
	for range 3 {
		f.step()
	}
	f.wantPhase(PhaseRolledBack)
	// Fixed: the agents would now succeed, but still report the old failure
	// until they retry.
	clear(f.fail)
	for n, t := range f.targets {
		if t.Status.Phase == fleet.PhaseFailed {
			f.hold[n] = true
		}
	}
	f.command = CommandRetry
	f.step()
	f.wantPhase(PhaseProgressing)
	clear(f.hold)
	for range 5 {
		f.advance(time.Hour)
	}
	f.wantPhase(PhaseSucceeded)
}
