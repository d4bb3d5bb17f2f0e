package fleet

import (
	"strconv"
	"time"
)

// Paths of the fleet API, relative to the server URL.
const (
	PathEnroll  = "/api/v1/enroll"
	PathDesired = "/api/v1/targets/{id}/desired" // GET, long-poll with If-None-Match
	PathStatus  = "/api/v1/targets/{id}/status"  // POST
	// PathFeedback takes a batch of sampled inputs (JSON lines) of one
	// release: POST ?release=R&digest=MODEL_DIGEST.
	PathFeedback = "/api/v1/targets/{id}/feedback"
	// PathEvaluation takes an evaluator's results of one run (POST), and
	// PathEvaluationBlob serves it the objects of the run's holdout
	// dataset (GET, HEAD; ?offset=&length=), so it needs no storage
	// credentials.
	PathEvaluation     = "/api/v1/targets/{id}/evaluations/{run}"
	PathEvaluationBlob = "/api/v1/targets/{id}/evaluations/{run}/blobs/{key...}"
)

// Facts are what a target observes about itself and reports at enrollment
// and with each status. Selectors see them as labels (see Labels).
type Facts struct {
	Arch         string   `json:"arch,omitempty"`      // GOARCH: amd64, arm64, arm
	OS           string   `json:"os,omitempty"`        // GOOS: linux
	OSVersion    string   `json:"osVersion,omitempty"` // e.g. "12" (Debian), "5.1" (JetPack)
	Kernel       string   `json:"kernel,omitempty"`
	Memory       int64    `json:"memory,omitempty"` // bytes
	CPUs         int      `json:"cpus,omitempty"`
	Accelerators []string `json:"accelerators,omitempty"`
	Hostname     string   `json:"hostname,omitempty"`
	TimeZone     string   `json:"timeZone,omitempty"`     // IANA name, for device-local update windows
	DiskFree     int64    `json:"diskFree,omitempty"`     // bytes free under the agent's root
	AgentVersion string   `json:"agentVersion,omitempty"` // version of the agent binary (cairn-agent or cairn)

	// Kind is "cluster" for a Kubernetes cluster (agent --driver kube) and
	// empty for a device. For a cluster, Arch is the nodes' architecture
	// when they share one, Memory the largest allocatable memory of a node
	// (what one pod can get), CPUs the allocatable CPUs of all nodes and
	// Accelerators "nvidia-gpu"/"amd-gpu" when some node offers them.
	Kind              string           `json:"kind,omitempty"`
	KubernetesVersion string           `json:"kubernetesVersion,omitempty"` // gitVersion of /version
	Nodes             int              `json:"nodes,omitempty"`
	Architectures     []string         `json:"architectures,omitempty"`
	GPUs              map[string]int64 `json:"gpus,omitempty"` // allocatable by resource name: nvidia.com/gpu
	KServe            bool             `json:"kserve,omitempty"`
}

// KindCluster is Facts.Kind of a Kubernetes cluster target.
const KindCluster = "cluster"

// Labels returns the facts as selector labels: arch, os, os.version, kernel,
// hostname, cpus, memory (bytes) and accelerator (the first one); for a
// cluster also kind, kubernetes.version, nodes and kserve (true/false).
func (f Facts) Labels() map[string]string {
	l := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			l[k] = v
		}
	}
	set("arch", f.Arch)
	set("os", f.OS)
	set("os.version", f.OSVersion)
	set("kernel", f.Kernel)
	set("hostname", f.Hostname)
	if f.CPUs > 0 {
		set("cpus", strconv.Itoa(f.CPUs))
	}
	if f.Memory > 0 {
		set("memory", strconv.FormatInt(f.Memory, 10))
	}
	if len(f.Accelerators) > 0 {
		set("accelerator", f.Accelerators[0])
	}
	set("kind", f.Kind)
	set("kubernetes.version", f.KubernetesVersion)
	if f.Kind == KindCluster {
		set("nodes", strconv.Itoa(f.Nodes))
		set("kserve", strconv.FormatBool(f.KServe))
	}
	return l
}

// Target is one enrolled device or cluster as the inventory knows it. It is
// also the record of `cairn plan --inventory FILE`.
type Target struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Facts  Facts             `json:"facts,omitempty"`
	// Models maps release name to the model digest the target runs now.
	Models map[string]string `json:"models,omitempty"`
	// Layers lists layer digests already on the target, for download-size estimates.
	Layers []string `json:"layers,omitempty"`
}

// SelectorLabels is what DeviceProfile selectors match: the target's labels
// with its facts (see Facts.Labels) laid over them.
func (t Target) SelectorLabels() map[string]string {
	l := make(map[string]string, len(t.Labels)+8)
	for k, v := range t.Labels {
		l[k] = v
	}
	for k, v := range t.Facts.Labels() {
		l[k] = v
	}
	return l
}

// EnrollRequest is posted once by an agent with the fleet's enrollment token.
type EnrollRequest struct {
	// Token is the fleet's enrollment token or a name's pre-authorised one.
	Token string `json:"token"`
	// Credential, when re-enrolling, is the target's current credential:
	// proving it rotates the credential without an admin.
	Credential string            `json:"credential,omitempty"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Facts      Facts             `json:"facts"`
}

// EnrollResponse carries the target's identity and its own credential; the
// server keeps only a hash of the credential.
type EnrollResponse struct {
	ID         string `json:"id"`
	Credential string `json:"credential"`
	// Pending: the credential works once an admin accepts it.
	Pending bool `json:"pending,omitempty"`
}

// HealthCheck mirrors the manifest's runtime health check on the wire.
type HealthCheck struct {
	HTTP    string        `json:"http,omitempty"`
	Exec    []string      `json:"exec,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Retries int           `json:"retries,omitempty"`
	Period  time.Duration `json:"period,omitempty"`
}

// Runtime is where and how a model is installed on the target.
type Runtime struct {
	Path        string       `json:"path,omitempty"`
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	Restart     []string     `json:"restart,omitempty"`
	// Stop runs before the agent uninstalls the release (pruned).
	Stop []string `json:"stop,omitempty"`
	// Metrics is the runtime's metrics URL the agent scrapes for live
	// input histograms (cairn_input_feature).
	Metrics string `json:"metrics,omitempty"`
}

// DesiredModel is one release's model a target must run.
type DesiredModel struct {
	Release string `json:"release"`
	Model   string `json:"model"`
	Version string `json:"version,omitempty"`
	// Artifact is the digest-pinned OCI reference to pull.
	Artifact string `json:"artifact"`
	Digest   string `json:"digest"`
	// PlainHTTP tells the agent the registry speaks plain HTTP (loopback).
	PlainHTTP bool    `json:"plainHTTP,omitempty"`
	Runtime   Runtime `json:"runtime"`
	// Rollout identifies the rollout this desired state belongs to, if any.
	Rollout string `json:"rollout,omitempty"`
	// DownloadTimeout is how long the agent retries a download that fails
	// on the way to the artifact (network, registry, storage) before the
	// install fails; zero means DefaultDownloadTimeout.
	DownloadTimeout time.Duration `json:"downloadTimeout,omitempty"`
	// Kubernetes is how cluster targets run the release (Release
	// spec.kubernetes); devices ignore it.
	Kubernetes *Kubernetes `json:"kubernetes,omitempty"`
	// Feedback, when set, asks the agent to upload a sample of the inputs
	// the runtime spools (Release spec.feedback).
	Feedback *Feedback `json:"feedback,omitempty"`
}

// Feedback is a release's feedback sampling on the wire.
type Feedback struct {
	// Sample is the share of spooled lines to upload, in (0, 1].
	Sample float64 `json:"sample"`
	// MaxPerDay bounds the bytes uploaded per target and UTC day.
	MaxPerDay int64 `json:"maxPerDay"`
	// Store is the server's dataset store the batches go to.
	Store string `json:"store,omitempty"`
}

// DefaultFeedbackPerDay is Feedback.MaxPerDay when a Release sets none.
const DefaultFeedbackPerDay = 50 << 20

// FeedbackBatch is one uploaded sample of a target's live inputs, stored
// as a dataset version: GET /api/v1/feedback lists them.
type FeedbackBatch struct {
	// Dataset is the version's root digest (cairn data pull DATASET).
	Dataset     string    `json:"dataset"`
	Store       string    `json:"store"`
	Target      string    `json:"target"`
	Release     string    `json:"release"`
	ModelDigest string    `json:"modelDigest"`
	Records     int64     `json:"records"`
	Bytes       int64     `json:"bytes"`
	Time        time.Time `json:"time"`
}

// EvaluationRun is one evaluation an evaluator makes: every model of it
// scored by Command on the holdout Dataset (a root digest in the server's
// dataset store, read through PathEvaluationBlob).
type EvaluationRun struct {
	ID      string            `json:"id"`
	Release string            `json:"release"`
	Dataset string            `json:"dataset"`
	Command []string          `json:"command"`
	Timeout time.Duration     `json:"timeout"`
	Models  []EvaluationModel `json:"models"`
	// Reason is why it runs: "candidate" (a new candidate) or "schedule".
	Reason    string    `json:"reason,omitempty"`
	Requested time.Time `json:"requested"`
}

// Roles of the models of an evaluation run.
const (
	RoleCandidate = "candidate"
	RoleChampion  = "champion"
)

// EvaluationModel is a model of a run: the candidate (what the release
// declares) or the champion (what it runs live).
type EvaluationModel struct {
	Role      string `json:"role"`
	Artifact  string `json:"artifact"`
	Digest    string `json:"digest"`
	PlainHTTP bool   `json:"plainHTTP,omitempty"`
}

// EvaluationResult is what an evaluator reports of one model of a run:
// the metrics its command printed, or why there are none.
type EvaluationResult struct {
	Role    string             `json:"role"`
	Digest  string             `json:"digest"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Error   string             `json:"error,omitempty"`
	// Seconds the command ran.
	Seconds float64 `json:"seconds"`
}

// EvaluationReport is the body of POST PathEvaluation.
type EvaluationReport struct {
	Results []EvaluationResult `json:"results"`
}

// EvaluationRecord is a run as the server keeps it: GET
// /api/v1/evaluations lists them, newest first, with the verdict of the
// candidate against the champion once both are scored.
type EvaluationRecord struct {
	EvaluationRun
	Evaluator string             `json:"evaluator"`
	Done      *time.Time         `json:"done,omitempty"`
	Results   []EvaluationResult `json:"results,omitempty"`
	// Verdict is the candidate against the thresholds and the champion.
	Verdict *EvaluationVerdict `json:"verdict,omitempty"`
}

// EvaluationVerdict summarises evaluation.Verdict on the wire.
type EvaluationVerdict struct {
	Pass    bool     `json:"pass"`
	Reasons []string `json:"reasons,omitempty"`
	// Summary is one line: "auc 0.81 vs champion 0.97".
	Summary string `json:"summary"`
}

// Kubernetes mirrors a Release's spec.kubernetes on the wire.
type Kubernetes struct {
	Image          string            `json:"image,omitempty"`
	ServingRuntime string            `json:"servingRuntime,omitempty"`
	ModelFormat    string            `json:"modelFormat,omitempty"`
	Replicas       *int              `json:"replicas,omitempty"`
	Requests       map[string]string `json:"requests,omitempty"`
	Limits         map[string]string `json:"limits,omitempty"`
	Env            []EnvVar          `json:"env,omitempty"`
	Port           int               `json:"port,omitempty"`
	Prune          *bool             `json:"prune,omitempty"`
}

// EnvVar is one environment variable of a cluster runtime.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value,omitempty"`
}

// DefaultDownloadTimeout is DesiredModel.DownloadTimeout when zero, as a
// RolloutPolicy's downloadTimeout is when unset.
const DefaultDownloadTimeout = time.Hour

// DesiredState is everything a target should run. ETag changes whenever the
// content does.
type DesiredState struct {
	Target string         `json:"target"`
	ETag   string         `json:"etag"`
	Models []DesiredModel `json:"models"`
	// Evaluations are the runs this target, an evaluator
	// (cairn.dev/role=evaluator), is asked to make; none for others.
	Evaluations []EvaluationRun `json:"evaluations,omitempty"`
	// Keep names releases the target must leave installed although Models
	// does not list them (Release spec.prune: false, or a release whose
	// record the server cannot read): the agent uninstalls every other
	// release it holds that Models does not list. Names it does not hold
	// mean nothing.
	Keep []string `json:"keep,omitempty"`
	// PollInterval hints how long the agent waits between polls on errors.
	PollInterval time.Duration `json:"pollInterval,omitempty"`
}

// Phases a target reports for a release.
const (
	PhasePending     = "Pending"
	PhaseDownloading = "Downloading"
	PhaseInstalling  = "Installing"
	PhaseVerifying   = "Verifying"
	PhaseHealthy     = "Healthy"
	PhaseFailed      = "Failed"
	PhaseRolledBack  = "RolledBack"
	// PhaseRemoved is logged (never reported as a release's phase) when
	// the agent uninstalls a release its desired state no longer lists.
	PhaseRemoved = "Removed"
	// PhaseRemoving is logged when the stop command of a release being
	// uninstalled failed: the release stays installed and the removal is
	// retried (the agent gives up stopping after a few attempts).
	PhaseRemoving = "Removing"
)

// ReleaseStatus is a target's state for one release.
type ReleaseStatus struct {
	Release string `json:"release"`
	Phase   string `json:"phase"`
	Message string `json:"message,omitempty"`
	// Digest is the model digest active now; Desired the one being installed.
	Digest  string `json:"digest,omitempty"`
	Desired string `json:"desired,omitempty"`
	// Previous is the digest kept in the inactive slot for rollback.
	Previous string `json:"previous,omitempty"`
	// Inputs is what the runtime serving Digest saw since the last report.
	Inputs *InputWindow `json:"inputs,omitempty"`
}

// InputWindow holds the live input counts a runtime observed between two
// scrapes (Start, End], per feature: the deltas of its cumulative
// cairn_input_feature histograms and cairn_input_category_total counters.
type InputWindow struct {
	Start    time.Time                   `json:"start"`
	End      time.Time                   `json:"end"`
	Features map[string]FeatureHistogram `json:"features"`
}

// FeatureHistogram is one input feature's counts: numeric buckets, where
// Counts[i] holds values in (Bounds[i-1], Bounds[i]] and the last count
// those above every bound (len(Counts) = len(Bounds)+1), or the counts of
// a categorical feature's values.
type FeatureHistogram struct {
	Bounds     []float64        `json:"bounds,omitempty"`
	Counts     []int64          `json:"counts,omitempty"`
	Categories map[string]int64 `json:"categories,omitempty"`
}

// LogEntry is one step of a deployment, as the agent saw it.
type LogEntry struct {
	Time    time.Time `json:"time"`
	Release string    `json:"release,omitempty"`
	Phase   string    `json:"phase"`
	Message string    `json:"message"`
	// Digest is the model digest a Removed entry uninstalled.
	Digest string `json:"digest,omitempty"`
}

// FeatureStats are live statistics of one input feature, for drift detection.
type FeatureStats struct {
	Count    int64     `json:"count"`
	Mean     float64   `json:"mean"`
	Variance float64   `json:"variance"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Bins     []float64 `json:"bins,omitempty"`   // histogram bin edges
	Counts   []int64   `json:"counts,omitempty"` // histogram counts
}

// StatusReport is posted by an agent after every change and periodically.
type StatusReport struct {
	Time     time.Time       `json:"time"`
	Facts    *Facts          `json:"facts,omitempty"`
	Releases []ReleaseStatus `json:"releases"`
	// Metrics are the target's and runtime's own: error_rate, latency_p95_ms,
	// cpu_percent, memory_bytes, temperature_c, uptime_s, ...
	Metrics  map[string]float64      `json:"metrics,omitempty"`
	Features map[string]FeatureStats `json:"features,omitempty"`
	Log      []LogEntry              `json:"log,omitempty"`
}

// ReleaseState is the server's view of one release: what is admitted, where
// its rollout stands, and the last digest known good.
type ReleaseState struct {
	Name string `json:"name"`
	// Digest is the model digest of the admitted commit; LastGood the digest
	// the fleet falls back to on rollback.
	Digest   string `json:"digest,omitempty"`
	LastGood string `json:"lastGood,omitempty"`
	// Phase of the rollout: Progressing, Paused, Succeeded, RolledBack, Aborted.
	Phase   string `json:"phase,omitempty"`
	Wave    int    `json:"wave,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// HealthySince is when every target of the release last became healthy on Digest.
	HealthySince *time.Time `json:"healthySince,omitempty"`
	Commit       string     `json:"commit,omitempty"`
}

// Inventory is the live fleet as `GET /api/v1/inventory` returns it (admin or
// read-only token): what `cairn plan --server` diffs against.
type Inventory struct {
	Commit   string         `json:"commit,omitempty"`
	Targets  []Target       `json:"targets"`
	Releases []ReleaseState `json:"releases"`
}
