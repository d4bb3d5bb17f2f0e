package rollout

import (
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// Rollout phases.
const (
	PhaseProgressing = "Progressing"
	PhasePaused      = "Paused"
	PhaseSucceeded   = "Succeeded"
	PhaseRolledBack  = "RolledBack"
	PhaseAborted     = "Aborted"
)

// Operator commands (cairn rollout pause|resume|abort|retry).
const (
	CommandPause  = "pause"
	CommandResume = "resume"
	CommandAbort  = "abort"
	CommandRetry  = "retry"
)

// TargetState is what the engine knows of one target the release selects.
type TargetState struct {
	Name     string
	TimeZone string // IANA zone of the device, for timeZone: device windows
	Online   bool
	LastSeen time.Time
	// Status is the target's last report for this release.
	Status  fleet.ReleaseStatus
	Metrics map[string]float64
}

// Assignment is the model a target must run for a release.
type Assignment struct {
	Digest   string `json:"digest"`
	Artifact string `json:"artifact"`
}

// State is the persisted state of a release's rollout, JSON-encoded by the
// store. The zero State means the release has never rolled out.
type State struct {
	Release  string     `json:"release"`
	Target   Assignment `json:"target"`   // the model being rolled out
	LastGood Assignment `json:"lastGood"` // the model to fall back to
	Phase    string     `json:"phase"`
	Wave     int        `json:"wave"`
	// WaveStarted is when the current wave started; bake counts from there.
	WaveStarted time.Time `json:"waveStarted"`
	Started     time.Time `json:"started"`
	Reason      string    `json:"reason,omitempty"`
	Message     string    `json:"message,omitempty"`
	// Failed lists targets that reported Failed on Target.
	Failed []string `json:"failed,omitempty"`
}

// Input is everything Step decides from.
type Input struct {
	Now     time.Time
	Release manifests.Release
	Model   manifests.Model // the admitted model of the release
	Policy  manifests.RolloutPolicy
	// Targets are the targets the release's profiles select now.
	Targets []TargetState
	// Prev is the state persisted after the last Step.
	Prev State
	// Command is a pending operator command, applied once.
	Command string
}

// Event is something the engine did, for the event log, alerts and lineage.
type Event struct {
	Type    string   `json:"type"` // manifests.Event* names
	Reason  string   `json:"reason,omitempty"`
	Message string   `json:"message"`
	Targets []string `json:"targets,omitempty"`
}

// Output is the engine's decision.
type Output struct {
	State State
	// Desired maps each selected target to the model it must run now.
	Desired map[string]Assignment
	Events  []Event
	// RequeueAfter is when Step should run again at the latest (bake ends,
	// window opens); zero means on the next change.
	RequeueAfter time.Duration
}

// Step advances a release's rollout by one decision.
//
// Placeholder until the rollout issue lands: every target gets the admitted
// model at once.
func Step(in Input) Output {
	want := Assignment{Digest: digestOf(in.Model.Spec.Artifact), Artifact: in.Model.Spec.Artifact}
	st := in.Prev
	st.Release = in.Release.Metadata.Name
	if st.Target != want {
		st.LastGood = st.Target
		st.Target = want
		st.Started = in.Now
		st.WaveStarted = in.Now
		st.Phase = PhaseSucceeded
	}
	out := Output{State: st, Desired: map[string]Assignment{}}
	for _, t := range in.Targets {
		out.Desired[t.Name] = want
	}
	return out
}

func digestOf(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '@' {
			return ref[i+1:]
		}
	}
	return ""
}
