package manifests

import "time"

// APIVersion is the only apiVersion cairn's kinds are served under.
const APIVersion = "cairn.dev/v1alpha1"

// The kinds a cairn GitOps repository declares.
const (
	KindDataset         = "Dataset"
	KindModel           = "Model"
	KindDeviceProfile   = "DeviceProfile"
	KindRolloutPolicy   = "RolloutPolicy"
	KindRelease         = "Release"
	KindAlert           = "Alert"
	defaultDatasetStore = "default"
)

// ObjectMeta is the subset of Kubernetes object metadata cairn uses.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// Source says where an object was declared: the file relative to the
// repository root and the line of its document.
type Source struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

// Dataset is a content-addressed dataset version in an object store.
type Dataset struct {
	Kind     string      `json:"kind"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     DatasetSpec `json:"spec"`
	Source   Source      `json:"-"`
}

// DatasetSpec pins a dataset version by its root digest.
type DatasetSpec struct {
	// Digest is the root digest printed by `cairn data push` (sha256:<64 hex>).
	Digest string `json:"digest"`
	// Store names an object store of the server configuration; "default" when empty.
	Store   string `json:"store,omitempty"`
	Format  string `json:"format,omitempty"`
	License string `json:"license,omitempty"`
}

// Model is a digest-pinned model artifact in an OCI registry.
type Model struct {
	Kind     string     `json:"kind"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     ModelSpec  `json:"spec"`
	Source   Source     `json:"-"`
}

// ModelSpec describes one model version.
type ModelSpec struct {
	Version string `json:"version"`
	// Artifact is an OCI reference pinned by digest: host/repo@sha256:<64 hex>.
	Artifact    string         `json:"artifact"`
	Format      string         `json:"format,omitempty"`
	TrainedOn   []string       `json:"trainedOn,omitempty"`
	EvaluatedOn []Evaluation   `json:"evaluatedOn,omitempty"`
	Requires    Requirements   `json:"requires,omitempty"`
	Variants    []ModelVariant `json:"variants,omitempty"`
	// Evaluation schedules evaluations of this model on a holdout for
	// every Release of it that declares none of its own.
	Evaluation *EvaluationSpec `json:"evaluation,omitempty"`
}

// ModelVariant is an alternative artifact for a platform (int8 for arm64, fp16 for GPUs).
type ModelVariant struct {
	Platform string `json:"platform"`
	Artifact string `json:"artifact"`
}

// Evaluation records metrics of a model on a dataset.
type Evaluation struct {
	Dataset string             `json:"dataset"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Requirements a target must meet to run a model.
type Requirements struct {
	Memory       Quantity `json:"memory,omitempty"`
	Arch         []string `json:"arch,omitempty"`
	Accelerators []string `json:"accelerators,omitempty"`
}

// DeviceProfile selects targets by their labels and facts, like a Mender
// dynamic group.
type DeviceProfile struct {
	Kind     string            `json:"kind"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     DeviceProfileSpec `json:"spec"`
	Source   Source            `json:"-"`
}

// DeviceProfileSpec holds the selector of a DeviceProfile.
type DeviceProfileSpec struct {
	Selector LabelSelector `json:"selector"`
}

// LabelSelector is a Kubernetes-style label selector.
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// Selector operators.
const (
	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
)

// LabelSelectorRequirement is one expression of a LabelSelector.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// RolloutPolicy says how a release moves through its targets.
type RolloutPolicy struct {
	Kind     string            `json:"kind"`
	Metadata ObjectMeta        `json:"metadata"`
	Spec     RolloutPolicySpec `json:"spec"`
	Source   Source            `json:"-"`
}

// RolloutPolicySpec holds waves, gates, abort criteria and windows.
type RolloutPolicySpec struct {
	Waves []Wave `json:"waves"`
	// MaxUnavailable bounds targets updating at once: a count ("3") or a percent ("10%").
	MaxUnavailable string        `json:"maxUnavailable,omitempty" cairn:"intOrString"`
	Abort          *AbortPolicy  `json:"abort,omitempty"`
	Gates          []Gate        `json:"gates,omitempty"`
	Window         *UpdateWindow `json:"window,omitempty"`
	// OnFailure is "rollback" (default) or "pause".
	OnFailure string   `json:"onFailure,omitempty"`
	Policies  []string `json:"policies,omitempty"`
	// DownloadTimeout is how long an agent keeps retrying a download that
	// fails on the network, the registry or its storage before the install
	// fails (default DefaultDownloadTimeout); until then the target is
	// Downloading, not failed.
	DownloadTimeout Duration `json:"downloadTimeout,omitempty"`
}

// DefaultDownloadTimeout is a RolloutPolicy's downloadTimeout when unset.
const DefaultDownloadTimeout = time.Hour

// Wave is one step of a rollout: the cumulative percent of targets updated
// once it starts, and how long it bakes before the next.
type Wave struct {
	Percent int      `json:"percent"`
	Bake    Duration `json:"bake,omitempty"`
}

// AbortPolicy stops a rollout when too many targets fail.
type AbortPolicy struct {
	FailedPercent float64 `json:"failedPercent,omitempty"`
	MinFailed     int     `json:"minFailed,omitempty"`
}

// Gate holds a wave while a metric, aggregated over the reports of the
// wave's updated targets during the bake, exceeds Max (or falls below Min).
type Gate struct {
	Metric string   `json:"metric"`
	Max    *float64 `json:"max,omitempty"`
	Min    *float64 `json:"min,omitempty"`
	// Aggregate is how the bake's samples become one value: mean (default),
	// max, min or p95.
	Aggregate string `json:"aggregate,omitempty"`
	// MinSamples is how many reports the bake needs before the gate can
	// pass (default 1); fewer is inconclusive.
	MinSamples int `json:"minSamples,omitempty"`
	// OnNoData is what the end of the bake does with a gate that has no (or
	// too few) samples: fail (default), pause or pass.
	OnNoData string `json:"onNoData,omitempty"`
}

// Gate aggregates.
const (
	AggregateMean = "mean"
	AggregateMax  = "max"
	AggregateMin  = "min"
	AggregateP95  = "p95"
)

// Gate onNoData values.
const (
	OnNoDataFail  = "fail"
	OnNoDataPause = "pause"
	OnNoDataPass  = "pass"
)

// UpdateWindow restricts when targets may start an update.
type UpdateWindow struct {
	// Schedule is a five-field cron expression for the window's start.
	Schedule string   `json:"schedule"`
	Duration Duration `json:"duration"`
	// TimeZone is "device", "UTC" or an IANA zone name.
	TimeZone string `json:"timeZone,omitempty"`
}

// OnFailure values.
const (
	OnFailureRollback = "rollback"
	OnFailurePause    = "pause"
)

// Release puts a model on the targets its profiles select.
type Release struct {
	Kind     string      `json:"kind"`
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ReleaseSpec `json:"spec"`
	Source   Source      `json:"-"`
}

// ReleaseSpec names a model, its targets, rollout policy and runtime.
type ReleaseSpec struct {
	Model         string          `json:"model"`
	Targets       []ReleaseTarget `json:"targets"`
	RolloutPolicy string          `json:"rolloutPolicy,omitempty"`
	After         *Promotion      `json:"after,omitempty"`
	Runtime       Runtime         `json:"runtime,omitempty"`
	// Kubernetes is how the release runs on cluster targets (agents with
	// --driver kube); devices ignore it.
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
	Suspend    bool        `json:"suspend,omitempty"`
	// Monitor watches the release's live inputs after (and during) a rollout.
	Monitor *Monitor `json:"monitor,omitempty"`
	// Feedback makes targets upload a sample of the live inputs their
	// runtime spools, as dataset versions, for retraining.
	Feedback *Feedback `json:"feedback,omitempty"`
	// Evaluation scores the release's candidate model and its live
	// (champion) model on a holdout, on schedule and for every new
	// candidate; the verdict reaches policies as input.evaluation.
	// It overrides the Model's spec.evaluation.
	Evaluation *EvaluationSpec `json:"evaluation,omitempty"`
	// Prune uninstalls the release from a target it no longer reaches: the
	// release removed from the repository, or the target no longer selected
	// by its profiles (default true). With prune: false what is installed
	// stays installed and running, unmanaged, as Flux leaves the objects of
	// a Kustomization with prune disabled.
	Prune *bool `json:"prune,omitempty"`
}

// Prunes reports whether the release is uninstalled where it no longer
// runs (spec.prune, default true).
func (s ReleaseSpec) Prunes() bool { return s.Prune == nil || *s.Prune }

// EvaluationSpec is a scheduled evaluation against the champion: agents
// labelled cairn.dev/role=evaluator pull the candidate and champion
// digests and the holdout Dataset (pinned by digest), run Command with
// CAIRN_MODEL_DIR and CAIRN_DATASET_DIR set, and report the one JSON
// object of metrics it prints on stdout ({"auc": 0.95}).
type EvaluationSpec struct {
	// Schedule is a five-field cron expression (UTC) of the runs besides
	// those of a new candidate.
	Schedule string `json:"schedule"`
	// Dataset names the holdout Dataset.
	Dataset string   `json:"dataset"`
	Command []string `json:"command"`
	// Timeout bounds one run of Command (default 10m).
	Timeout Duration `json:"timeout,omitempty"`
	// MaxAge is how recent the candidate's evaluation must be for the
	// evaluation policy (default 24h).
	MaxAge  Duration                    `json:"maxAge,omitempty"`
	Metrics map[string]EvaluationMetric `json:"metrics"`
}

// EvaluationMetric is the thresholds of one metric: its value against Min
// and Max, and how much worse than the champion it may be, absolutely
// (MaxDrop) and as a share of the champion's value (MaxRelativeDrop).
// Worse is lower when Direction is "higher" (the default), higher when
// it is "lower".
type EvaluationMetric struct {
	Direction       string   `json:"direction,omitempty"`
	Min             *float64 `json:"min,omitempty"`
	Max             *float64 `json:"max,omitempty"`
	MaxDrop         *float64 `json:"maxDrop,omitempty"`
	MaxRelativeDrop *float64 `json:"maxRelativeDrop,omitempty"`
}

// Evaluation defaults and metric directions.
const (
	DefaultEvaluationTimeout = 10 * time.Minute
	DefaultEvaluationMaxAge  = 24 * time.Hour
	DirectionHigher          = "higher"
	DirectionLower           = "lower"
	// RoleLabel is the target label that makes an agent an evaluator
	// (RoleEvaluator).
	RoleLabel     = "cairn.dev/role"
	RoleEvaluator = "evaluator"
)

// Feedback is what a release's targets send back of what they saw: a
// sampled share of the JSON lines the runtime spools, at most MaxPerDay
// bytes a target and day, stored through the server as dataset versions
// in the named dataset store of the server's configuration.
type Feedback struct {
	// Sample is the share of lines uploaded, in (0, 1].
	Sample float64 `json:"sample"`
	// MaxPerDay bounds the bytes a target uploads per UTC day (default 50Mi).
	MaxPerDay Quantity `json:"maxPerDay,omitempty"`
	// Store names a dataset store of the server (default "default").
	Store string `json:"store,omitempty"`
}

// Kubernetes is what a cluster target applies for a release: an
// InferenceService where KServe is installed (storageUri oci://repo@digest),
// otherwise a Deployment whose init container pulls the model by digest
// into an emptyDir, and a Service, all named after the release.
type Kubernetes struct {
	// Image is the runtime container image. Required on clusters without
	// KServe; with KServe it overrides the ServingRuntime's image.
	Image string `json:"image,omitempty"`
	// ServingRuntime names a KServe ServingRuntime (predictor.model.runtime).
	ServingRuntime string `json:"servingRuntime,omitempty"`
	// ModelFormat is the KServe model format name (default "onnx").
	ModelFormat string `json:"modelFormat,omitempty"`
	// Replicas of the Deployment, or the InferenceService's minReplicas (default 1).
	Replicas  *int                `json:"replicas,omitempty"`
	Resources KubernetesResources `json:"resources,omitempty"`
	Env       []EnvVar            `json:"env,omitempty"`
	// Port the runtime listens on; the Service exposes it (default 8080).
	Port int `json:"port,omitempty"`
	// Prune deletes the objects a release no longer declares, and all of a
	// removed release (default true).
	Prune *bool `json:"prune,omitempty"`
}

// KubernetesResources are container requests and limits by resource name
// (cpu, memory, nvidia.com/gpu), as Kubernetes quantities.
type KubernetesResources struct {
	Requests map[string]KubeQuantity `json:"requests,omitempty"`
	Limits   map[string]KubeQuantity `json:"limits,omitempty"`
}

// KubeQuantity is a Kubernetes resource quantity as written: 500m, 2, 1Gi.
type KubeQuantity string

// EnvVar is one environment variable of the runtime container.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// Monitor is what a release watches on its targets.
type Monitor struct {
	Drift *DriftMonitor `json:"drift,omitempty"`
}

// DriftMonitor configures the drift of live inputs against the training
// dataset's profile: the sliding window and minimum sample count the
// drift_psi, drift_js and drift_ks metrics are computed over (for gates
// too), and an optional alarm: DriftDetected when Metric stays above Max on
// a target for For, and a rollback to the last good model when Action is
// "rollback".
type DriftMonitor struct {
	Window     Duration `json:"window,omitempty"`     // default 15m
	MinSamples int64    `json:"minSamples,omitempty"` // default 100
	Metric     string   `json:"metric,omitempty"`     // drift_psi, drift_js, drift_ks, or one feature's (drift_psi:rms)
	Max        *float64 `json:"max,omitempty"`
	For        Duration `json:"for,omitempty"`
	Action     string   `json:"action,omitempty"` // "" (alert only) or "rollback"
}

// Drift monitor defaults and actions.
const (
	DefaultDriftWindow     = 15 * time.Minute
	DefaultDriftMinSamples = 100
	DriftActionRollback    = "rollback"
)

// ReleaseTarget selects targets by DeviceProfile name.
type ReleaseTarget struct {
	Profile string `json:"profile"`
}

// Promotion gates a release on another release having been healthy with the
// same model digest for a time.
type Promotion struct {
	Release    string   `json:"release"`
	HealthyFor Duration `json:"healthyFor"`
}

// Runtime says where a model is installed on a target and how its health is checked.
type Runtime struct {
	Path        string       `json:"path,omitempty"`
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	// Restart is an optional command run after the active slot switches.
	Restart []string `json:"restart,omitempty"`
	// Stop is an optional command run before the agent uninstalls the
	// release (pruned): it should stop the runtime serving the model and
	// succeed when the runtime is already stopped.
	Stop []string `json:"stop,omitempty"`
	// Metrics is the runtime's metrics URL (Prometheus text or JSON): the
	// agent scrapes its cairn_input_feature histograms for drift.
	Metrics string `json:"metrics,omitempty"`
}

// HealthCheck is an HTTP or exec probe of the runtime serving a model.
type HealthCheck struct {
	// HTTP is a URL that must answer 2xx within Timeout.
	HTTP string `json:"http,omitempty"`
	// Exec is a command and arguments; exit 0 is healthy. CAIRN_MODEL_DIR is
	// set to the new slot.
	Exec    []string `json:"exec,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
	Retries int      `json:"retries,omitempty"`
	Period  Duration `json:"period,omitempty"`
}

// Alert sends rollout and fleet events to a webhook.
type Alert struct {
	Kind     string     `json:"kind"`
	Metadata ObjectMeta `json:"metadata"`
	Spec     AlertSpec  `json:"spec"`
	Source   Source     `json:"-"`
}

// AlertSpec lists the events and where they go.
type AlertSpec struct {
	Events  []string `json:"events"`
	Webhook Webhook  `json:"webhook"`
}

// Webhook is where an Alert posts events.
type Webhook struct {
	URL string `json:"url"`
	// SecretRef names a secret of the server configuration used to sign the body (HMAC-SHA256).
	SecretRef string `json:"secretRef,omitempty"`
	// Format is "json" (default) or "slack".
	Format string `json:"format,omitempty"`
}

// EvaluationOf is the evaluation a release runs: its own spec.evaluation,
// else its model's; nil when neither declares one.
func EvaluationOf(rel Release, model Model) *EvaluationSpec {
	if rel.Spec.Evaluation != nil {
		return rel.Spec.Evaluation
	}
	return model.Spec.Evaluation
}
