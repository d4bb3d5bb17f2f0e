package plan

import (
	"context"
	"time"

	"github.com/cairn-dev/cairn/evaluation"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// EvaluationResults finds a model's latest evaluation on a holdout
// dataset (by their digests); nil when it was never evaluated there.
// The reconciler wires its evaluation store into it.
type EvaluationResults interface {
	LatestEvaluation(ctx context.Context, modelDigest, datasetDigest string) (*policies.EvaluatedModel, error)
}

// Champion is the digest a release runs live: its rollout's when that
// succeeded, else the last good one ("" for a release never rolled out).
func Champion(digest, lastGood, phase string) string {
	if phase == "Succeeded" {
		return digest
	}
	return lastGood
}

// evaluationInput is input.evaluation of a release with an evaluation:
// the holdout, and with live state and results the candidate's and the
// champion's latest evaluations and the verdict.
func (c *computer) evaluationInput(ctx context.Context, rel manifests.Release, model manifests.Model, digest string) *policies.EvaluationInput {
	spec := manifests.EvaluationOf(rel, model)
	if spec == nil {
		return nil
	}
	maxAge := spec.MaxAge.Duration
	if maxAge <= 0 {
		maxAge = manifests.DefaultEvaluationMaxAge
	}
	in := &policies.EvaluationInput{Dataset: spec.Dataset, MaxAge: maxAge.String(), MaxAgeNs: int64(maxAge),
		Candidate: policies.EvaluatedModel{Digest: digest}}
	if ds, ok := c.snap.Dataset(spec.Dataset); ok {
		in.DatasetDigest = ds.Spec.Digest
	}
	if !c.opts.Live || c.opts.Evaluations == nil {
		return in
	}
	in.Available = true
	var champion string
	if s, ok := c.live[rel.Metadata.Name]; ok {
		champion = Champion(s.Digest, s.LastGood, s.Phase)
	}
	read := func(d string) (policies.EvaluatedModel, bool) {
		got, err := c.opts.Evaluations.LatestEvaluation(ctx, d, in.DatasetDigest)
		switch {
		case err != nil:
			in.Error = err.Error()
			return policies.EvaluatedModel{Digest: d}, false
		case got == nil:
			return policies.EvaluatedModel{Digest: d}, false
		}
		got.Digest, got.Evaluated = d, true
		if got.TimeNs != 0 {
			got.Time = time.Unix(0, got.TimeNs).UTC().Format(time.RFC3339)
		}
		return *got, true
	}
	var candOK, champOK bool
	in.Candidate, candOK = read(digest)
	if champion != "" && champion != digest {
		ch, ok := read(champion)
		in.Champion, champOK = &ch, ok
	}
	if !candOK || in.Candidate.Error != "" || (in.Champion != nil && (!champOK || in.Champion.Error != "")) {
		return in
	}
	var champMetrics map[string]float64
	if in.Champion != nil {
		champMetrics = in.Champion.Metrics
	}
	v := evaluation.Compare(spec.Metrics, in.Candidate.Metrics, champMetrics)
	in.Verdict = &v
	return in
}
