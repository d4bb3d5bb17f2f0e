package openlineage

import "time"

// OpenLineage identifiers of what cairn emits.
const (
	Producer       = "https://github.com/cairn-dev/cairn"
	RunEventSchema = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
	// facetSchemaBase is where cairn's facets are defined: lineage/facets.json.
	facetSchemaBase  = "https://github.com/cairn-dev/cairn/blob/main/lineage/facets.json#/$defs/"
	JobNamespace     = "cairn"
	ModelNamespace   = "cairn://models"
	DatasetNamespace = "cairn://datasets"
	TargetNamespace  = "cairn://targets"
	ReleaseNamespace = "cairn://releases"
)

// OpenLineage event types cairn emits.
const (
	EventStart    = "START"
	EventComplete = "COMPLETE"
	EventFail     = "FAIL"
)

// RunEvent is an OpenLineage RunEvent (spec 2-0-2).
type RunEvent struct {
	EventType string    `json:"eventType"`
	EventTime time.Time `json:"eventTime"`
	Producer  string    `json:"producer"`
	SchemaURL string    `json:"schemaURL"`
	Run       Run       `json:"run"`
	Job       Job       `json:"job"`
	Inputs    []Dataset `json:"inputs"`
	Outputs   []Dataset `json:"outputs"`
}

// Run is the run of a RunEvent; runId is a UUIDv5 of the step, stable over
// replays.
type Run struct {
	RunID  string         `json:"runId"`
	Facets map[string]any `json:"facets,omitempty"`
}

// Job is the job of a RunEvent.
type Job struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// Dataset is an input or output dataset of a RunEvent: cairn models,
// datasets, targets and releases are all datasets to OpenLineage.
type Dataset struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// Facet is the common part of cairn's facets.
type Facet struct {
	Producer  string `json:"_producer"`
	SchemaURL string `json:"_schemaURL"`
}

// NewFacet returns the common part of the cairn facet defined as name in
// lineage/facets.json.
func NewFacet(name string) Facet { return Facet{Producer: Producer, SchemaURL: facetSchemaBase + name} }

// ModelFacet describes a model (dataset facet "cairn_model").
type ModelFacet struct {
	Facet
	Digest   string `json:"digest"`
	Ref      string `json:"ref,omitempty"`
	Name     string `json:"name,omitempty"`
	Version  string `json:"version,omitempty"`
	Source   string `json:"source,omitempty"`
	Revision string `json:"revision,omitempty"`
}

// DeploymentFacet describes a deployment or rollback (run facet
// "cairn_deployment").
type DeploymentFacet struct {
	Facet
	Release string    `json:"release,omitempty"`
	Rollout string    `json:"rollout,omitempty"`
	Targets []string  `json:"targets"`
	Model   string    `json:"model,omitempty"`
	From    string    `json:"from,omitempty"` // rollback: digest rolled back
	Start   time.Time `json:"start"`
	End     time.Time `json:"end,omitzero"`
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
}

// AdmissionFacet describes an admission (run facet "cairn_admission").
type AdmissionFacet struct {
	Facet
	Commit      string       `json:"commit"`
	Release     string       `json:"release"`
	Allowed     bool         `json:"allowed"`
	Message     string       `json:"message,omitempty"`
	Evaluations []Evaluation `json:"evaluations,omitempty"`
}

// Evaluation is one evaluation of a model on a dataset, as admission saw it.
type Evaluation struct {
	Dataset string             `json:"dataset"`          // name
	Digest  string             `json:"digest,omitempty"` // dataset digest when known
	Metrics map[string]float64 `json:"metrics,omitempty"`
}
