package lineage

import (
	"context"
	"fmt"
	"time"
)

// StepDrift is the kind of a recorded drift observation.
const StepDrift = "drift"

// EdgeDriftedFrom reads "model driftedFrom dataset": the inputs a target
// fed the model moved away from the training dataset's profile.
const EdgeDriftedFrom = "driftedFrom"

// DriftFacts is a drift the server observed on one target: the live inputs
// of ModelDigest compared with the profile of Dataset (its training data).
type DriftFacts struct {
	Release     string             `json:"release"`
	Target      string             `json:"target"`
	ModelDigest string             `json:"modelDigest"`
	Dataset     string             `json:"dataset"` // dataset digest
	Metric      string             `json:"metric"`  // drift_psi, drift_js, drift_ks (or :FEATURE)
	Value       float64            `json:"value"`
	Max         float64            `json:"max"`
	Samples     int64              `json:"samples"`
	Features    map[string]float64 `json:"features,omitempty"` // worst features: PSI
	Time        time.Time          `json:"time"`
}

func (f *DriftFacts) normalize(now time.Time) error {
	f.ModelDigest, f.Dataset = sha(f.ModelDigest), sha(f.Dataset)
	if f.ModelDigest == "" || f.Dataset == "" || f.Target == "" {
		return fmt.Errorf("%w: drift: model digest, dataset digest and target are required", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	return nil
}

func (f DriftFacts) edges() []Edge {
	attrs := map[string]any{"target": f.Target, "release": f.Release, "metric": f.Metric, "value": f.Value, "max": f.Max, "samples": f.Samples}
	if len(f.Features) > 0 {
		attrs["features"] = f.Features
	}
	return []Edge{{Type: EdgeDriftedFrom, From: Node(NodeModel, f.ModelDigest), To: Node(NodeDataset, f.Dataset), Time: f.Time, Attrs: attrs}}
}

// RecordDrift records a drift observation: model driftedFrom dataset, with
// the target, the statistic and the worst features as attributes.
func (g *Graph) RecordDrift(ctx context.Context, f DriftFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	st, err := newStep(StepDrift, f.Time, f, f.Release, f.Target, f.ModelDigest, f.Time.Format(time.RFC3339Nano))
	if err != nil {
		return err
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record drift of %s on %s: %w", f.ModelDigest, f.Target, err)
	}
	return nil
}
