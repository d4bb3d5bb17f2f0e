package model

import (
	"fmt"
	"sort"
)

// Metrics are the evaluation results of a model on a labelled dataset, the
// numbers that go into a Model manifest's evaluatedOn.
type Metrics struct {
	Dataset   string  `json:"dataset,omitempty"`
	Rows      int     `json:"rows"`
	AUC       float64 `json:"auc"`
	F1        float64 `json:"f1"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	Accuracy  float64 `json:"accuracy"`
	Threshold float64 `json:"threshold"`
}

// Evaluate scores rows with m and compares the scores with labels.
func Evaluate(m *Model, rows [][]float64, labels []bool) (Metrics, error) {
	scores, err := m.Score(rows)
	if err != nil {
		return Metrics{}, fmt.Errorf("evaluate: %w", err)
	}
	return MetricsOf(scores, labels, m.Config.Threshold), nil
}

// MetricsOf computes AUC (ties counted half) and the threshold metrics.
func MetricsOf(scores []float64, labels []bool, threshold float64) Metrics {
	mt := Metrics{Rows: len(scores), Threshold: threshold, AUC: AUC(scores, labels)}
	var tp, fp, fn, tn float64
	for i, s := range scores {
		switch pred := s >= threshold; {
		case pred && labels[i]:
			tp++
		case pred:
			fp++
		case labels[i]:
			fn++
		default:
			tn++
		}
	}
	if tp+fp > 0 {
		mt.Precision = tp / (tp + fp)
	}
	if tp+fn > 0 {
		mt.Recall = tp / (tp + fn)
	}
	if mt.Precision+mt.Recall > 0 {
		mt.F1 = 2 * mt.Precision * mt.Recall / (mt.Precision + mt.Recall)
	}
	if n := tp + fp + fn + tn; n > 0 {
		mt.Accuracy = (tp + tn) / n
	}
	return mt
}

// AUC is the area under the ROC curve: the probability that a random
// positive scores above a random negative, ties counting half. It is 0.5
// when either class is empty.
func AUC(scores []float64, labels []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })
	var pos, neg, rankSum float64
	for i := 0; i < len(idx); {
		j := i
		for j < len(idx) && scores[idx[j]] == scores[idx[i]] {
			j++
		}
		avgRank := float64(i+j+1) / 2 // ranks are 1-based
		for k := i; k < j; k++ {
			if labels[idx[k]] {
				pos++
				rankSum += avgRank
			} else {
				neg++
			}
		}
		i = j
	}
	if pos == 0 || neg == 0 {
		return 0.5
	}
	return (rankSum - pos*(pos+1)/2) / (pos * neg)
}

// bestF1Threshold returns the score threshold that maximises F1.
func bestF1Threshold(scores []float64, labels []bool) float64 {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	var totalPos float64
	for _, l := range labels {
		if l {
			totalPos++
		}
	}
	best, bestT := -1.0, 0.5
	var tp, fp float64
	for k, i := range idx {
		if labels[i] {
			tp++
		} else {
			fp++
		}
		if k+1 < len(idx) && scores[idx[k+1]] == scores[i] {
			continue
		}
		if f1 := 2 * tp / (tp + fp + totalPos); f1 > best {
			best, bestT = f1, scores[i]
		}
	}
	return bestT
}
