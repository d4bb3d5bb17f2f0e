package lineage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

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
	EventType string      `json:"eventType"`
	EventTime time.Time   `json:"eventTime"`
	Producer  string      `json:"producer"`
	SchemaURL string      `json:"schemaURL"`
	Run       OLRun       `json:"run"`
	Job       OLJob       `json:"job"`
	Inputs    []OLDataset `json:"inputs"`
	Outputs   []OLDataset `json:"outputs"`
}

// OLRun is the run of a RunEvent; runId is a UUIDv5 of the step, stable over
// replays.
type OLRun struct {
	RunID  string         `json:"runId"`
	Facets map[string]any `json:"facets,omitempty"`
}

// OLJob is the job of a RunEvent.
type OLJob struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// OLDataset is an input or output dataset of a RunEvent: cairn models,
// datasets, targets and releases are all datasets to OpenLineage.
type OLDataset struct {
	Namespace string         `json:"namespace"`
	Name      string         `json:"name"`
	Facets    map[string]any `json:"facets,omitempty"`
}

// facet is the common part of cairn's facets.
type facet struct {
	Producer  string `json:"_producer"`
	SchemaURL string `json:"_schemaURL"`
}

func newFacet(name string) facet { return facet{Producer: Producer, SchemaURL: facetSchemaBase + name} }

// ModelFacet describes a model (dataset facet "cairn_model").
type ModelFacet struct {
	facet
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
	facet
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
	facet
	Commit      string       `json:"commit"`
	Release     string       `json:"release"`
	Allowed     bool         `json:"allowed"`
	Message     string       `json:"message,omitempty"`
	Evaluations []Evaluation `json:"evaluations,omitempty"`
}

func modelDataset(digest string, f *ModelFacet) OLDataset {
	if f == nil {
		f = &ModelFacet{Digest: digest}
	}
	f.facet = newFacet("ModelFacet")
	return OLDataset{Namespace: ModelNamespace, Name: digest, Facets: map[string]any{"cairn_model": f}}
}

func datasetOf(name, digest string) OLDataset {
	if digest == "" {
		return OLDataset{Namespace: DatasetNamespace, Name: name}
	}
	return OLDataset{Namespace: DatasetNamespace, Name: digest}
}

// RunEvent converts a recorded step to its OpenLineage RunEvent.
func (s Step) RunEvent() (RunEvent, error) {
	ev := RunEvent{
		EventType: EventComplete,
		EventTime: s.Time,
		Producer:  Producer,
		SchemaURL: RunEventSchema,
		Run:       OLRun{RunID: s.RunID},
		Job:       OLJob{Namespace: JobNamespace},
		Inputs:    []OLDataset{},
		Outputs:   []OLDataset{},
	}
	dec := func(v any) error {
		if err := json.Unmarshal(s.Facts, v); err != nil {
			return fmt.Errorf("decode %s step %s: %w", s.Kind, s.ID, err)
		}
		return nil
	}
	switch s.Kind {
	case StepPush:
		var f PushFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "model.push/" + repository(f.Ref, f.Name)
		for _, name := range sortedKeys(f.TrainedOn) {
			ev.Inputs = append(ev.Inputs, datasetOf(name, f.TrainedOn[name]))
		}
		ev.Outputs = append(ev.Outputs, modelDataset(f.ModelDigest, &ModelFacet{Digest: f.ModelDigest, Ref: f.Ref, Name: f.Name, Version: f.Version, Source: f.Source, Revision: f.Revision}))
	case StepAdmission:
		var f AdmissionFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "admission/" + f.Release
		if f.Denied {
			ev.EventType = EventFail
		}
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, &ModelFacet{Digest: f.ModelDigest, Name: f.Model, Revision: f.Commit}))
		for _, name := range sortedKeys(f.Datasets) {
			ev.Inputs = append(ev.Inputs, datasetOf(name, f.Datasets[name]))
		}
		for _, e := range f.Evaluations {
			ev.Inputs = append(ev.Inputs, datasetOf(e.Dataset, e.Digest))
		}
		ev.Outputs = append(ev.Outputs, OLDataset{Namespace: ReleaseNamespace, Name: f.Release})
		ev.Run.Facets = map[string]any{"cairn_admission": AdmissionFacet{facet: newFacet("AdmissionFacet"), Commit: f.Commit, Release: f.Release, Allowed: !f.Denied, Message: f.Message, Evaluations: f.Evaluations}}
	case StepDeployment:
		var f DeploymentFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "deploy/" + nonEmpty(f.Release, "-")
		switch {
		case f.Outcome == OutcomeFailed:
			ev.EventType = EventFail
		case f.Outcome == OutcomeProgressing && f.End.IsZero():
			ev.EventType = EventStart
		}
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil))
		ev.Outputs = append(ev.Outputs, OLDataset{Namespace: TargetNamespace, Name: f.Target})
		ev.Run.Facets = map[string]any{"cairn_deployment": DeploymentFacet{facet: newFacet("DeploymentFacet"), Release: f.Release, Rollout: f.Rollout, Targets: []string{f.Target}, Model: f.ModelDigest, Start: f.Start, End: f.End, Outcome: f.Outcome}}
	case StepRollback:
		var f RollbackFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "rollback/" + f.Release
		ev.Inputs = append(ev.Inputs, modelDataset(f.From, nil))
		if f.To != "" {
			ev.Inputs = append(ev.Inputs, modelDataset(f.To, nil))
		}
		for _, t := range f.Targets {
			ev.Outputs = append(ev.Outputs, OLDataset{Namespace: TargetNamespace, Name: t})
		}
		targets := f.Targets
		if targets == nil {
			targets = []string{}
		}
		ev.Run.Facets = map[string]any{"cairn_deployment": DeploymentFacet{facet: newFacet("DeploymentFacet"), Release: f.Release, Rollout: f.Rollout, Targets: targets, Model: f.To, From: f.From, Start: f.Time, Outcome: OutcomeRolledBack, Reason: f.Reason}}
	case StepDrift:
		var f DriftFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "drift/" + nonEmpty(f.Release, "-")
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil), datasetOf("", f.Dataset))
		ev.Outputs = append(ev.Outputs, OLDataset{Namespace: TargetNamespace, Name: f.Target})
	default:
		return ev, fmt.Errorf("step %s: unknown kind %q", s.ID, s.Kind)
	}
	return ev, nil
}

// repository is the repository part of an OCI reference (no tag, no
// digest), or fallback.
func repository(ref, fallback string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return nonEmpty(ref, nonEmpty(fallback, "-"))
}

func nonEmpty(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// Export converts every step q recorded, in order, to a RunEvent and hands it
// to emit.
func Export(ctx context.Context, q Querier, emit func(RunEvent) error) error {
	var after int64
	for {
		steps, err := q.Steps(ctx, after, 1000)
		if err != nil {
			return fmt.Errorf("export lineage: %w", err)
		}
		for _, s := range steps {
			ev, err := s.RunEvent()
			if err != nil {
				return fmt.Errorf("export lineage: %w", err)
			}
			if err := emit(ev); err != nil {
				return fmt.Errorf("export lineage step %d: %w", s.Seq, err)
			}
			after = s.Seq
		}
		if len(steps) < 1000 {
			return nil
		}
	}
}

// JSONLines returns an emit function writing each event as one JSON line.
func JSONLines(w io.Writer) func(RunEvent) error {
	enc := json.NewEncoder(w)
	return func(ev RunEvent) error { return enc.Encode(ev) }
}

// Poster posts RunEvents to an OpenLineage HTTP endpoint (Marquez:
// POST {URL}/api/v1/lineage), retrying network errors, 429 and 5xx with
// exponential backoff.
type Poster struct {
	// URL is the endpoint's base, e.g. http://marquez:5000.
	URL string
	// Token, when set, is sent as a bearer token.
	Token string
	// Attempts per event; 5 when zero.
	Attempts int
	// Backoff before the first retry, doubled each time; 200ms when zero.
	Backoff time.Duration
	// Client is http.DefaultClient when nil.
	Client *http.Client
}

// Post sends one event.
func (p *Poster) Post(ctx context.Context, ev RunEvent) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode run event %s: %w", ev.Run.RunID, err)
	}
	attempts, backoff, client := p.Attempts, p.Backoff, p.Client
	if attempts <= 0 {
		attempts = 5
	}
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	if client == nil {
		client = http.DefaultClient
	}
	u := strings.TrimRight(p.URL, "/") + "/api/v1/lineage"
	var last error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("post run event %s to %s: %w (last: %v)", ev.Run.RunID, u, ctx.Err(), last)
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("post run event to %s: %w", u, err)
		}
		req.Header.Set("Content-Type", "application/json")
		if p.Token != "" {
			req.Header.Set("Authorization", "Bearer "+p.Token)
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			last = fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
		default:
			return fmt.Errorf("post run event %s to %s: %s: %s", ev.Run.RunID, u, resp.Status, strings.TrimSpace(string(msg)))
		}
	}
	return fmt.Errorf("post run event %s to %s: gave up after %d attempts: %v", ev.Run.RunID, u, attempts, last)
}
