package evaluation

import (
	"reflect"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/manifests"
)

func f(v float64) *float64 { return &v }

func TestCompare(t *testing.T) {
	auc := map[string]manifests.EvaluationMetric{"auc": {Min: f(0.9), MaxDrop: f(0.02)}}
	cases := []struct {
		name                string
		spec                map[string]manifests.EvaluationMetric
		candidate, champion map[string]float64
		pass                bool
		reasons             []string
		drop, rel           *float64
	}{
		{name: "first release, no champion, above min", spec: auc, candidate: map[string]float64{"auc": 0.95}, pass: true},
		{name: "no champion, below min", spec: auc, candidate: map[string]float64{"auc": 0.85},
			reasons: []string{"auc 0.85 is below the minimum 0.9"}},
		{name: "better than the champion", spec: auc, candidate: map[string]float64{"auc": 0.97}, champion: map[string]float64{"auc": 0.95},
			pass: true, drop: f(-0.02), rel: f(-0.02 / 0.95)},
		{name: "drop exactly maxDrop passes (rounding absorbed)", spec: auc, candidate: map[string]float64{"auc": 0.93}, champion: map[string]float64{"auc": 0.95},
			pass: true, drop: f(0.95 - 0.93), rel: f((0.95 - 0.93) / 0.95)},
		{name: "drop over maxDrop", spec: auc, candidate: map[string]float64{"auc": 0.92}, champion: map[string]float64{"auc": 0.95},
			reasons: []string{"auc 0.92 is 0.03 below the champion's 0.95 (maxDrop 0.02)"}, drop: f(0.95 - 0.92), rel: f((0.95 - 0.92) / 0.95)},
		{name: "below min and over maxDrop", spec: auc, candidate: map[string]float64{"auc": 0.81}, champion: map[string]float64{"auc": 0.97},
			reasons: []string{"auc 0.81 is below the minimum 0.9", "auc 0.81 is 0.16 below the champion's 0.97 (maxDrop 0.02)"},
			drop:    f(0.97 - 0.81), rel: f((0.97 - 0.81) / 0.97)},
		{name: "candidate did not report the metric", spec: auc, candidate: map[string]float64{"f1": 0.9}, champion: map[string]float64{"auc": 0.95},
			reasons: []string{"auc: the candidate's evaluation reported no value"}},
		{name: "champion did not report it: value only", spec: auc, candidate: map[string]float64{"auc": 0.91}, champion: map[string]float64{"f1": 0.9}, pass: true},
		{name: "lower is better: a rise is a drop", spec: map[string]manifests.EvaluationMetric{"latency_ms": {Direction: "lower", Max: f(50), MaxRelativeDrop: f(0.1)}},
			candidate: map[string]float64{"latency_ms": 44}, champion: map[string]float64{"latency_ms": 40},
			pass: true, drop: f(4), rel: f(0.1)},
		{name: "lower is better: relative rise over", spec: map[string]manifests.EvaluationMetric{"latency_ms": {Direction: "lower", Max: f(50), MaxRelativeDrop: f(0.1)}},
			candidate: map[string]float64{"latency_ms": 60}, champion: map[string]float64{"latency_ms": 40},
			reasons: []string{"latency_ms 60 is above the maximum 50", "latency_ms 60 is 50.0% above the champion's 40 (maxRelativeDrop 0.1)"}, drop: f(20), rel: f(0.5)},
		{name: "lower is better: a fall is better", spec: map[string]manifests.EvaluationMetric{"loss": {Direction: "lower", MaxDrop: f(0)}},
			candidate: map[string]float64{"loss": 0.2}, champion: map[string]float64{"loss": 0.3}, pass: true, drop: f(0.2 - 0.3), rel: f((0.2 - 0.3) / 0.3)},
		{name: "champion value 0: no relative drop, any worse fails", spec: map[string]manifests.EvaluationMetric{"errors": {Direction: "lower", MaxRelativeDrop: f(0.5)}},
			candidate: map[string]float64{"errors": 1}, champion: map[string]float64{"errors": 0},
			reasons: []string{"errors 1 is worse than the champion's 0, by any share (maxRelativeDrop 0.5)"}, drop: f(1)},
		{name: "relative drop on a negative champion", spec: map[string]manifests.EvaluationMetric{"score": {MaxRelativeDrop: f(0.1)}},
			candidate: map[string]float64{"score": -1.5}, champion: map[string]float64{"score": -1},
			reasons: []string{"score -1.5 is 50.0% below the champion's -1 (maxRelativeDrop 0.1)"}, drop: f(0.5), rel: f(0.5)},
		{name: "no thresholds: recorded, passes", spec: map[string]manifests.EvaluationMetric{"f1": {}},
			candidate: map[string]float64{"f1": 0.1}, champion: map[string]float64{"f1": 0.9}, pass: true, drop: f(0.9 - 0.1), rel: f((0.9 - 0.1) / 0.9)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := Compare(tc.spec, tc.candidate, tc.champion)
			if v.Pass != tc.pass || !reflect.DeepEqual(v.Reasons, tc.reasons) {
				t.Fatalf("Compare = pass %v, reasons %q; want %v, %q", v.Pass, v.Reasons, tc.pass, tc.reasons)
			}
			if len(v.Metrics) != len(tc.spec) {
				t.Fatalf("%d metrics, want %d", len(v.Metrics), len(tc.spec))
			}
			m := v.Metrics[0]
			if !near(m.Drop, tc.drop) || !near(m.RelativeDrop, tc.rel) {
				t.Fatalf("drop %v rel %v, want %v %v", deref(m.Drop), deref(m.RelativeDrop), deref(tc.drop), deref(tc.rel))
			}
			for _, r := range v.Reasons {
				if !strings.HasPrefix(r, m.Name) {
					t.Errorf("reason %q does not name the metric %s", r, m.Name)
				}
			}
		})
	}
}

func TestCompareOrdersMetrics(t *testing.T) {
	spec := map[string]manifests.EvaluationMetric{"recall": {Min: f(0.5)}, "auc": {Min: f(0.9)}, "f1": {}}
	v := Compare(spec, map[string]float64{"auc": 0.8, "f1": 0.7, "recall": 0.4}, nil)
	var names []string
	for _, m := range v.Metrics {
		names = append(names, m.Name)
	}
	if !reflect.DeepEqual(names, []string{"auc", "f1", "recall"}) || len(v.Reasons) != 2 || !strings.HasPrefix(v.Reasons[1], "recall") {
		t.Fatalf("metrics %v reasons %q", names, v.Reasons)
	}
}

func near(a, b *float64) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	d := *a - *b
	return d < 1e-12 && d > -1e-12
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
