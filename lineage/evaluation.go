package lineage

import (
	"context"
	"fmt"
	"time"
)

// StepEvaluation is the kind of a recorded evaluation run result.
const StepEvaluation = "evaluation"

// EvaluationFacts is one model scored on a holdout by an evaluator: the
// edge "model evaluatedOn dataset" with the time and the metrics.
type EvaluationFacts struct {
	Run         string             `json:"run"`
	Release     string             `json:"release"`
	Role        string             `json:"role"` // candidate or champion
	ModelDigest string             `json:"modelDigest"`
	Dataset     string             `json:"dataset"` // the holdout's root digest
	Evaluator   string             `json:"evaluator"`
	Metrics     map[string]float64 `json:"metrics"`
	Time        time.Time          `json:"time"`
}

func (f *EvaluationFacts) normalize(now time.Time) error {
	f.Dataset, f.ModelDigest = sha(f.Dataset), sha(f.ModelDigest)
	if f.Dataset == "" || f.ModelDigest == "" || f.Run == "" || len(f.Metrics) == 0 {
		return fmt.Errorf("%w: evaluation: run, model digest, dataset digest and metrics are required", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	return nil
}

// RecordEvaluation records an evaluation result: model evaluatedOn the
// holdout dataset, with the metrics, run, role and evaluator. The same
// run and model recorded again adds nothing.
func (g *Graph) RecordEvaluation(ctx context.Context, f EvaluationFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	st, err := newStep(StepEvaluation, f.Time, f, f.Run, f.ModelDigest)
	if err != nil {
		return err
	}
	attrs := map[string]any{"metrics": f.Metrics, "run": f.Run, "release": f.Release, "role": f.Role, "evaluator": f.Evaluator}
	edges := []Edge{{Type: EdgeEvaluatedOn, From: Node(NodeModel, f.ModelDigest), To: Node(NodeDataset, f.Dataset), Time: f.Time, Attrs: attrs}}
	if err := g.record(ctx, st, edges); err != nil {
		return fmt.Errorf("record evaluation %s of %s: %w", f.Run, f.ModelDigest, err)
	}
	return nil
}
