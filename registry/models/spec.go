package models

import "time"

// ModelConfig is the ModelPack config blob (application/vnd.cncf.model.config.v1+json),
// as in modelpack/model-spec specs-go/v1/config.go.
type ModelConfig struct {
	Descriptor ModelDescriptor `json:"descriptor"`
	ModelFS    ModelFS         `json:"modelfs"`
	Config     ModelParams     `json:"config"`
}

// ModelDescriptor is the general information of a model.
type ModelDescriptor struct {
	CreatedAt   *time.Time `json:"createdAt,omitempty"`
	Authors     []string   `json:"authors,omitempty"`
	Family      string     `json:"family,omitempty"`
	Name        string     `json:"name,omitempty"`
	DocURL      string     `json:"docURL,omitempty"`
	SourceURL   string     `json:"sourceURL,omitempty"`
	DatasetsURL []string   `json:"datasetsURL,omitempty"`
	Version     string     `json:"version,omitempty"`
	Revision    string     `json:"revision,omitempty"`
	Vendor      string     `json:"vendor,omitempty"`
	Licenses    []string   `json:"licenses,omitempty"`
	Title       string     `json:"title,omitempty"`
	Description string     `json:"description,omitempty"`
}

// ModelFS lists the layers' content digests (DiffIDs), bottom-most first.
type ModelFS struct {
	Type    string   `json:"type"` // always "layers"
	DiffIDs []string `json:"diffIds"`
}

// ModelParams are the execution parameters of the model ("config" in the spec).
type ModelParams struct {
	Architecture string `json:"architecture,omitempty"`
	Format       string `json:"format,omitempty"`
	ParamSize    string `json:"paramSize,omitempty"`
	Precision    string `json:"precision,omitempty"`
	Quantization string `json:"quantization,omitempty"`
}
