package rollout

import (
	"fmt"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// command applies an operator command.
func (e *engine) command(cmd string) {
	st := &e.st
	ignore := func() {
		e.event(manifests.EventCommandIgnored, "", fmt.Sprintf("%s ignored: rollout is %s", cmd, st.Phase), nil)
	}
	switch cmd {
	case CommandPause:
		if st.Phase != PhaseProgressing {
			ignore()
			return
		}
		st.Phase, st.PausedBy, st.Reason, st.Message = PhasePaused, "operator", ReasonOperatorPause, "paused by operator"
		e.event(manifests.EventRolloutPaused, ReasonOperatorPause, "rollout paused by operator", nil)
	case CommandResume:
		if st.Phase != PhasePaused {
			ignore()
			return
		}
		st.Phase, st.PausedBy, st.Reason, st.Message = PhaseProgressing, "", "", ""
		st.FailedAcked = len(st.Failed) // failures the operator has seen do not abort again
		e.event(manifests.EventRolloutResumed, "", "rollout resumed by operator", nil)
	case CommandAbort:
		if st.Phase != PhaseProgressing && st.Phase != PhasePaused {
			ignore()
			return
		}
		st.Phase, st.PausedBy, st.Reason = PhaseAborted, "", ReasonOperatorAbort
		st.Message = fmt.Sprintf("aborted by operator; targets back on %s", orNone(st.LastGood.Digest))
		st.Updating = nil
		e.event(manifests.EventRolloutAborted, ReasonOperatorAbort, st.Message, nil)
		e.event(manifests.EventRolledBack, ReasonOperatorAbort, st.Message, nil)
	case CommandRollback:
		if st.Phase != PhaseSucceeded || st.Previous.IsZero() {
			ignore()
			return
		}
		st.Phase, st.Reason = PhaseRolledBack, ReasonMonitor
		st.LastGood, st.Previous = st.Previous, Assignment{}
		st.Message = fmt.Sprintf("rolled back to %s by the release's monitor", orNone(st.LastGood.Digest))
		e.event(manifests.EventRolledBack, ReasonMonitor, st.Message, slices.Clone(e.names))
	case CommandRetry:
		if st.Phase == PhaseProgressing || st.Phase == PhaseSucceeded {
			ignore()
			return
		}
		// Targets still reporting the old failure are not counted again
		// until they report something else.
		st.Stale = nil
		for _, n := range e.names {
			if t := e.target(n); t.Status.Phase == fleet.PhaseFailed && t.Status.Desired == st.Target.Digest {
				st.Stale = append(st.Stale, n)
			}
		}
		st.Phase, st.PausedBy, st.Reason, st.Message = PhaseProgressing, "", "", ""
		st.Wave, st.WaveStarted, st.Started, st.BakeStarted = 0, e.in.Now, e.in.Now, time.Time{}
		st.Failed, st.Updating, st.FailedAcked = nil, nil, 0
		e.event(manifests.EventRolloutRetried, "", fmt.Sprintf("rollout of %s retried from wave 1", digest.Short(st.Target.Digest)), nil)
		// The new attempt (a new Key) starts at wave 1 as a new rollout
		// does, and says so: waves after it are announced as it advances.
		if len(e.waves) > 0 {
			e.waveStarted()
		}
	default:
		e.event(manifests.EventCommandIgnored, "", fmt.Sprintf("unknown command %q", cmd), nil)
	}
}
