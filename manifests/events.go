package manifests

// Event types: the one list of what the reconciler records (fleet.Event.Type,
// GET /api/v1/events) and Alerts may subscribe to (Events).
const (
	// Rollouts (reconciler/rollout).
	EventRolloutStarted    = "RolloutStarted"
	EventWaveStarted       = "WaveStarted"
	EventRolloutDone       = "RolloutSucceeded"
	EventRolloutFailed     = "RolloutFailed"
	EventRolledBack        = "RolledBack"
	EventRolloutPaused     = "RolloutPaused"
	EventRolloutResumed    = "RolloutResumed"
	EventRolloutAborted    = "RolloutAborted"
	EventRolloutRetried    = "RolloutRetried"
	EventRolloutSuperseded = "RolloutSuperseded"
	EventCommandIgnored    = "CommandIgnored"
	// EventGateChanged is a gate's outcome over a wave's bake changing
	// (pass, fail, inconclusive, no data), with its aggregate value.
	EventGateChanged = "GateChanged"
	// Admission (reconciler).
	EventReleaseAdmitted = "ReleaseAdmitted"
	EventReleaseRemoved  = "ReleaseRemoved"
	EventReleasePruned   = "ReleasePruned" // a removed release's desired state withdrawn: agents uninstall it
	EventCommitRejected  = "CommitRejected"
	EventPolicyDenied    = "PolicyDenied"
	EventArtifactMissing = "ArtifactMissing" // a model artifact or dataset is not in its registry or store
	// The fleet.
	EventTargetOffline = "TargetOffline"
	EventDriftDetected = "DriftDetected"
	// Evaluation (reconciler): a run asked of an evaluator agent, and its
	// verdict of candidate against champion.
	EventEvaluationRequested = "EvaluationRequested"
	EventEvaluated           = "Evaluated"
)
