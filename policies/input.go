package policies

import (
	"github.com/cairn-dev/cairn/evaluation"
	"github.com/cairn-dev/cairn/manifests"
)

// Input is the document a policy sees as `input`, once per Release. It is
// documented with an example in policies/README.md; keep the two in step.
type Input struct {
	Release       ReleaseInput        `json:"release"`
	Model         ModelInput          `json:"model"`
	Datasets      []DatasetInput      `json:"datasets"`
	RolloutPolicy *RolloutPolicyInput `json:"rolloutPolicy,omitempty"`
	Targets       TargetsInput        `json:"targets"`
	Lineage       LineageInput        `json:"lineage"`
	// Evaluation is the release's scheduled evaluation against the
	// champion (spec.evaluation of the Release or its Model); absent when
	// it declares none.
	Evaluation *EvaluationInput `json:"evaluation,omitempty"`
	// Now is the evaluation time (RFC 3339) and NowNs the same in Unix
	// nanoseconds; policies use it instead of time.now_ns so a plan is
	// reproducible.
	Now   string `json:"now"`
	NowNs int64  `json:"now_ns"`
}

// ReleaseInput is the Release object.
type ReleaseInput struct {
	Name        string                `json:"name"`
	Labels      map[string]string     `json:"labels,omitempty"`
	Annotations map[string]string     `json:"annotations,omitempty"`
	Spec        manifests.ReleaseSpec `json:"spec"`
	Source      string                `json:"source,omitempty"` // file:line
}

// ModelInput is the Release's Model, with what the registry says of its
// artifact when it was reachable.
type ModelInput struct {
	Name string              `json:"name"`
	Spec manifests.ModelSpec `json:"spec"`
	// Artifact is spec.artifact; Registry its host, Repository its path,
	// Digest the pinned digest ("" when not pinned).
	Artifact   string `json:"artifact"`
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Format     string `json:"format,omitempty"`
	// Requires repeats spec.requires with the memory also in bytes.
	Requires Requirements `json:"requires"`
	// Evaluations is spec.evaluatedOn.
	Evaluations []manifests.Evaluation `json:"evaluations,omitempty"`
	// Size is the sum of layer sizes; nil when the registry was not consulted.
	Size   *int64       `json:"size,omitempty"`
	Layers []LayerInput `json:"layers,omitempty"`
	// Annotations of the artifact's manifest, when known.
	Annotations map[string]string `json:"annotations,omitempty"`
	// MediaType and ArtifactType of the artifact's manifest, and the
	// platforms of its variants (an image index), when known.
	MediaType    string   `json:"mediaType,omitempty"`
	ArtifactType string   `json:"artifactType,omitempty"`
	Platforms    []string `json:"platforms,omitempty"`
	// Missing is true when the Release names a model the repository does not declare.
	Missing bool `json:"missing,omitempty"`
}

// Requirements are a model's needs, memory both as written and in bytes.
type Requirements struct {
	Memory       string   `json:"memory,omitempty"`
	MemoryBytes  int64    `json:"memoryBytes,omitempty"`
	Arch         []string `json:"arch,omitempty"`
	Accelerators []string `json:"accelerators,omitempty"`
}

// LayerInput is one layer of the model artifact.
type LayerInput struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType,omitempty"`
	Path      string `json:"path,omitempty"`
}

// DatasetInput is a dataset the model was trained or evaluated on.
type DatasetInput struct {
	Name    string `json:"name"`
	Digest  string `json:"digest,omitempty"`
	License string `json:"license,omitempty"`
	Format  string `json:"format,omitempty"`
	Store   string `json:"store,omitempty"`
	// Roles: "trainedOn", "evaluatedOn" or both.
	Roles []string `json:"roles"`
	// Missing is true when the model names a dataset the repository does not declare.
	Missing bool `json:"missing,omitempty"`
	// Profile is the dataset's stored profile summary, when known.
	Profile map[string]any `json:"profile,omitempty"`
}

// RolloutPolicyInput is the Release's RolloutPolicy.
type RolloutPolicyInput struct {
	Name string                      `json:"name"`
	Spec manifests.RolloutPolicySpec `json:"spec"`
}

// TargetsInput summarises the targets the Release selects. Targets with equal
// facts form one class, so the document stays small for fleets of 100,000.
type TargetsInput struct {
	Count    int           `json:"count"`
	Profiles []string      `json:"profiles"`
	Classes  []TargetClass `json:"classes"`
}

// TargetClass is a set of selected targets with the same facts.
type TargetClass struct {
	Facts ClassFacts `json:"facts"`
	Count int        `json:"count"`
	// Names lists up to MaxClassNames targets of the class, sorted.
	Names []string `json:"names"`
}

// MaxClassNames bounds TargetClass.Names.
const MaxClassNames = 10

// ClassFacts are the facts that define a class: what requirements are checked against.
type ClassFacts struct {
	Arch         string   `json:"arch,omitempty"`
	OS           string   `json:"os,omitempty"`
	OSVersion    string   `json:"osVersion,omitempty"`
	Memory       int64    `json:"memory,omitempty"`
	Accelerators []string `json:"accelerators,omitempty"`
}

// LineageInput holds live facts from the server, when one was given.
type LineageInput struct {
	// Available is false when no live state was consulted (plan without --server).
	Available bool `json:"available"`
	// Releases maps release name to its live state (the promotion source among them).
	Releases map[string]ReleaseState `json:"releases,omitempty"`
	// RanDigest lists the releases that run, or last ran healthily, the model digest.
	RanDigest []string `json:"ranDigest,omitempty"`
}

// ReleaseState is a release's live state as the server reports it.
type ReleaseState struct {
	Digest         string `json:"digest,omitempty"`
	LastGood       string `json:"lastGood,omitempty"`
	Phase          string `json:"phase,omitempty"`
	HealthySince   string `json:"healthySince,omitempty"`
	HealthySinceNs int64  `json:"healthySinceNs,omitempty"`
}

// EvaluationInput is what the server knows of a release's evaluation: the
// holdout, the latest results of the candidate (the model digest of this
// Release) and of the champion (the digest it runs live, absent when none
// or the same), and the verdict of one against the other.
type EvaluationInput struct {
	// Available is false when no server was asked (plan without --server).
	Available bool `json:"available"`
	// Error says why the server's results could not be read.
	Error         string `json:"error,omitempty"`
	Dataset       string `json:"dataset"`
	DatasetDigest string `json:"datasetDigest,omitempty"`
	// MaxAge is how recent the candidate's evaluation must be.
	MaxAge    string          `json:"maxAge"`
	MaxAgeNs  int64           `json:"maxAgeNs"`
	Candidate EvaluatedModel  `json:"candidate"`
	Champion  *EvaluatedModel `json:"champion,omitempty"`
	// Verdict is the candidate against the thresholds and the champion,
	// once both have metrics.
	Verdict *evaluation.Verdict `json:"verdict,omitempty"`
}

// EvaluatedModel is one model's latest evaluation on the holdout.
type EvaluatedModel struct {
	Digest string `json:"digest"`
	// Evaluated is false when it was never scored on this holdout.
	Evaluated bool               `json:"evaluated"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
	// Error is why the latest evaluation gave no metrics.
	Error  string `json:"error,omitempty"`
	Time   string `json:"time,omitempty"`
	TimeNs int64  `json:"timeNs,omitempty"`
	Run    string `json:"run,omitempty"`
}
