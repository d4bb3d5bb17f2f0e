package lineage

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/lineage/openlineage"
)

func modelDataset(digest string, f *openlineage.ModelFacet) openlineage.Dataset {
	if f == nil {
		f = &openlineage.ModelFacet{Digest: digest}
	}
	f.Facet = openlineage.NewFacet("ModelFacet")
	return openlineage.Dataset{Namespace: openlineage.ModelNamespace, Name: digest, Facets: map[string]any{"cairn_model": f}}
}

func datasetOf(name, digest string) openlineage.Dataset {
	if digest == "" {
		return openlineage.Dataset{Namespace: openlineage.DatasetNamespace, Name: name}
	}
	return openlineage.Dataset{Namespace: openlineage.DatasetNamespace, Name: digest}
}

// RunEvent converts a recorded step to its OpenLineage RunEvent.
func (s Step) RunEvent() (openlineage.RunEvent, error) {
	ev := openlineage.RunEvent{
		EventType: openlineage.EventComplete,
		EventTime: s.Time,
		Producer:  openlineage.Producer,
		SchemaURL: openlineage.RunEventSchema,
		Run:       openlineage.Run{RunID: s.RunID},
		Job:       openlineage.Job{Namespace: openlineage.JobNamespace},
		Inputs:    []openlineage.Dataset{},
		Outputs:   []openlineage.Dataset{},
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
		ev.Outputs = append(ev.Outputs, modelDataset(f.ModelDigest, &openlineage.ModelFacet{Digest: f.ModelDigest, Ref: f.Ref, Name: f.Name, Version: f.Version, Source: f.Source, Revision: f.Revision}))
	case StepAdmission:
		var f AdmissionFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "admission/" + f.Release
		if f.Denied {
			ev.EventType = openlineage.EventFail
		}
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, &openlineage.ModelFacet{Digest: f.ModelDigest, Name: f.Model, Revision: f.Commit}))
		for _, name := range sortedKeys(f.Datasets) {
			ev.Inputs = append(ev.Inputs, datasetOf(name, f.Datasets[name]))
		}
		for _, e := range f.Evaluations {
			ev.Inputs = append(ev.Inputs, datasetOf(e.Dataset, e.Digest))
		}
		ev.Outputs = append(ev.Outputs, openlineage.Dataset{Namespace: openlineage.ReleaseNamespace, Name: f.Release})
		ev.Run.Facets = map[string]any{"cairn_admission": openlineage.AdmissionFacet{Facet: openlineage.NewFacet("AdmissionFacet"), Commit: f.Commit, Release: f.Release, Allowed: !f.Denied, Message: f.Message, Evaluations: f.Evaluations}}
	case StepDeployment:
		var f DeploymentFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "deploy/" + nonEmpty(f.Release, "-")
		switch {
		case f.Outcome == OutcomeFailed:
			ev.EventType = openlineage.EventFail
		case f.Outcome == OutcomeProgressing && f.End.IsZero():
			ev.EventType = openlineage.EventStart
		}
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil))
		ev.Outputs = append(ev.Outputs, openlineage.Dataset{Namespace: openlineage.TargetNamespace, Name: f.Target})
		ev.Run.Facets = map[string]any{"cairn_deployment": openlineage.DeploymentFacet{Facet: openlineage.NewFacet("DeploymentFacet"), Release: f.Release, Rollout: f.Rollout, Targets: []string{f.Target}, Model: f.ModelDigest, Start: f.Start, End: f.End, Outcome: f.Outcome}}
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
			ev.Outputs = append(ev.Outputs, openlineage.Dataset{Namespace: openlineage.TargetNamespace, Name: t})
		}
		targets := f.Targets
		if targets == nil {
			targets = []string{}
		}
		ev.Run.Facets = map[string]any{"cairn_deployment": openlineage.DeploymentFacet{Facet: openlineage.NewFacet("DeploymentFacet"), Release: f.Release, Rollout: f.Rollout, Targets: targets, Model: f.To, From: f.From, Start: f.Time, Outcome: OutcomeRolledBack, Reason: f.Reason}}
	case StepDrift:
		var f DriftFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "drift/" + nonEmpty(f.Release, "-")
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil), datasetOf("", f.Dataset))
		ev.Outputs = append(ev.Outputs, openlineage.Dataset{Namespace: openlineage.TargetNamespace, Name: f.Target})
	case StepFeedback:
		var f FeedbackFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "feedback/" + nonEmpty(f.Release, "-")
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil), openlineage.Dataset{Namespace: openlineage.TargetNamespace, Name: f.Target})
		ev.Outputs = append(ev.Outputs, datasetOf("", f.Dataset))
	case StepEvaluation:
		var f EvaluationFacts
		if err := dec(&f); err != nil {
			return ev, err
		}
		ev.Job.Name = "evaluation/" + nonEmpty(f.Release, "-")
		ev.Inputs = append(ev.Inputs, modelDataset(f.ModelDigest, nil), datasetOf("", f.Dataset))
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
func Export(ctx context.Context, q Querier, emit func(openlineage.RunEvent) error) error {
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
