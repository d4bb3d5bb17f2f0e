package lineage

import (
	"context"
	"fmt"
	"time"
)

// StepFeedback is the kind of a recorded feedback upload.
const StepFeedback = "feedback"

// Edges of a feedback upload: "dataset observedBy target" (the target's
// runtime saw these inputs) and "dataset servedBy model" (while serving
// that model digest).
const (
	EdgeObservedBy = "observedBy"
	EdgeServedBy   = "servedBy"
)

// FeedbackFacts is one stored sample of a target's live inputs.
type FeedbackFacts struct {
	Dataset     string    `json:"dataset"` // the version's root digest
	Target      string    `json:"target"`
	Release     string    `json:"release"`
	ModelDigest string    `json:"modelDigest"`
	Records     int64     `json:"records"`
	Bytes       int64     `json:"bytes"`
	Time        time.Time `json:"time"`
}

func (f *FeedbackFacts) normalize(now time.Time) error {
	f.Dataset, f.ModelDigest = sha(f.Dataset), sha(f.ModelDigest)
	if f.Dataset == "" || f.ModelDigest == "" || f.Target == "" {
		return fmt.Errorf("%w: feedback: dataset digest, model digest and target are required", ErrInvalid)
	}
	if f.Time.IsZero() {
		f.Time = now
	}
	f.Time = micro(f.Time)
	return nil
}

func (f FeedbackFacts) edges() []Edge {
	attrs := map[string]any{"release": f.Release, "records": f.Records, "bytes": f.Bytes}
	ds := Node(NodeDataset, f.Dataset)
	return []Edge{
		{Type: EdgeObservedBy, From: ds, To: Node(NodeTarget, f.Target), Time: f.Time, Attrs: attrs},
		{Type: EdgeServedBy, From: ds, To: Node(NodeModel, f.ModelDigest), Time: f.Time, Attrs: map[string]any{"release": f.Release, "target": f.Target}},
	}
}

// RecordFeedback records a feedback upload: dataset observedBy target,
// dataset servedBy model. The same facts recorded again add nothing.
func (g *Graph) RecordFeedback(ctx context.Context, f FeedbackFacts) error {
	if err := f.normalize(g.now()); err != nil {
		return err
	}
	st, err := newStep(StepFeedback, f.Time, f, f.Target, f.Release, f.Dataset)
	if err != nil {
		return err
	}
	if err := g.record(ctx, st, f.edges()); err != nil {
		return fmt.Errorf("record feedback %s of %s: %w", f.Dataset, f.Target, err)
	}
	return nil
}
