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
	// PhaseDenied is a release that a policy denied before any commit of it
	// was admitted (the engine never runs for it).
	PhaseDenied = "Denied"
	// PhaseHeld is a release no commit of which was admitted yet because
	// its model artifact or a dataset is missing, or its registry or store
	// could not be asked.
	PhaseHeld = "Held"
)

// Operator commands (cairn rollout pause|resume|abort|retry).
const (
	CommandPause  = "pause"
	CommandResume = "resume"
	CommandAbort  = "abort"
	CommandRetry  = "retry"
	// CommandRollback sends every target of a succeeded rollout back to the
	// model that was good before it (a Release monitor's action: rollback).
	CommandRollback = "rollback"
)

// Reasons set in State.Reason.
const (
	ReasonTargetsFailed  = "TargetsFailed"
	ReasonMonitor        = "MonitorRollback"
	ReasonGateFailed     = "GateFailed"
	ReasonOperatorPause  = "OperatorPaused"
	ReasonOperatorAbort  = "OperatorAborted"
	ReasonWaitingWindow  = "WaitingForWindow"
	ReasonBaking         = "Baking"
	ReasonGateHolding    = "GateHolding"
	ReasonGateNoData     = "GateNoData"
	ReasonGateFailing    = "GateFailing"
	ReasonGatePassing    = "GatePassing"
	ReasonWaitingTargets = "WaitingForTargets"
	ReasonSuspended      = "Suspended"
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
	// ReportedAt is the time of the report Metrics come from: a gate takes
	// one sample per report.
	ReportedAt time.Time
}

// Assignment is the model a target must run for a release.
type Assignment struct {
	Digest   string `json:"digest"`
	Artifact string `json:"artifact"`
}

// IsZero reports whether a is no model at all.
func (a Assignment) IsZero() bool { return a.Digest == "" }

// State is the persisted state of a release's rollout, JSON-encoded by the
// store. The zero State means the release has never rolled out.
type State struct {
	Release  string     `json:"release"`
	Target   Assignment `json:"target"`   // the model being rolled out
	LastGood Assignment `json:"lastGood"` // the model to fall back to
	// Previous is the model that was last good before Target succeeded:
	// where CommandRollback goes back to.
	Previous Assignment `json:"previous,omitzero"`
	Phase    string     `json:"phase"`
	Wave     int        `json:"wave"`
	// WaveStarted is when the current wave started; bake counts from there.
	WaveStarted time.Time `json:"waveStarted"`
	Started     time.Time `json:"started"`
	Reason      string    `json:"reason,omitempty"`
	Message     string    `json:"message,omitempty"`
	// Failed lists targets that reported Failed on Target.
	Failed []string `json:"failed,omitempty"`

	// Waves is the number of waves of the policy.
	Waves int `json:"waves,omitempty"`
	// BakeStarted is when every online target of the started waves first ran
	// Target healthily; the wave's bake counts from there (zero: not yet).
	BakeStarted time.Time `json:"bakeStarted,omitempty"`
	// Updating lists targets told to install Target that have not reported
	// it healthy yet: what maxUnavailable bounds.
	Updating []string `json:"updating,omitempty"`
	// Superseded is the model of a rollout a newer digest replaced while it
	// progressed: targets already running it keep it until their wave of
	// the new rollout starts.
	Superseded Assignment `json:"superseded,omitzero"`
	// SupersededWave is the last wave the superseded rollout had started.
	SupersededWave int `json:"supersededWave,omitempty"`
	// Targets and Updated count the selected targets and those healthy on Target.
	Targets int `json:"targets,omitempty"`
	Updated int `json:"updated,omitempty"`
	// FailedAcked is how many of Failed the operator resumed past; only
	// failures beyond it count toward the abort threshold.
	FailedAcked int `json:"failedAcked,omitempty"`
	// Stale lists targets still reporting a failure from before a retry.
	Stale []string `json:"stale,omitempty"`
	// PausedBy says who paused the rollout: "operator", "failure" or "gate".
	PausedBy string `json:"pausedBy,omitempty"`
	// Gates are the samples the policy's gates took during the current
	// wave's bake.
	Gates *GateWindow `json:"gates,omitempty"`
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
	// Wave is the rollout's wave (0-based) when the event happened: the
	// wave a WaveStarted event starts.
	Wave int `json:"wave"`
}

// Output is the engine's decision.
type Output struct {
	State State
	// Desired maps each selected target to the model it must run now.
	// A target without an entry runs no model of the release (first
	// rollout, wave not reached yet).
	Desired map[string]Assignment
	Events  []Event
	// RequeueAfter is when Step should run again at the latest (bake ends,
	// window opens); zero means on the next change.
	RequeueAfter time.Duration
}
