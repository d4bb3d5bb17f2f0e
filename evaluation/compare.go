package evaluation

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cairn-dev/cairn/manifests"
)

// tolerance absorbs float rounding in a drop: 0.95-0.93 is 0.0200000000000000178,
// and maxDrop 0.02 means it may drop by 0.02.
const tolerance = 1e-9

// Metric is the comparison of one metric: the candidate's value, the
// champion's when there is one, how much worse the candidate is (Drop
// absolute, RelativeDrop as a share of the champion's value; negative when
// it is better) and, when it fails, the reasons naming the metric.
type Metric struct {
	Name         string   `json:"name"`
	Direction    string   `json:"direction"`
	Candidate    *float64 `json:"candidate"`
	Champion     *float64 `json:"champion,omitempty"`
	Drop         *float64 `json:"drop,omitempty"`
	RelativeDrop *float64 `json:"relativeDrop,omitempty"`
	Pass         bool     `json:"pass"`
	Reasons      []string `json:"reasons,omitempty"`
}

// Verdict is a candidate's evaluation against the thresholds and the
// champion: Pass when every metric passes; Reasons, each naming its
// metric, when not.
type Verdict struct {
	Pass    bool     `json:"pass"`
	Reasons []string `json:"reasons,omitempty"`
	Metrics []Metric `json:"metrics"`
}

// Compare judges candidate metrics under the thresholds of spec, against
// champion's (nil when the release has no champion: only the values are
// checked). A metric the candidate did not report fails; one the champion
// did not report is compared by value only.
func Compare(spec map[string]manifests.EvaluationMetric, candidate, champion map[string]float64) Verdict {
	v := Verdict{Pass: true, Metrics: []Metric{}}
	names := make([]string, 0, len(spec))
	for n := range spec {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		m := compareOne(name, spec[name], candidate, champion)
		if !m.Pass {
			v.Pass = false
			v.Reasons = append(v.Reasons, m.Reasons...)
		}
		v.Metrics = append(v.Metrics, m)
	}
	return v
}

func compareOne(name string, th manifests.EvaluationMetric, candidate, champion map[string]float64) Metric {
	m := Metric{Name: name, Direction: th.Direction, Pass: true}
	if m.Direction == "" {
		m.Direction = manifests.DirectionHigher
	}
	fail := func(format string, args ...any) {
		m.Pass = false
		m.Reasons = append(m.Reasons, fmt.Sprintf(format, args...))
	}
	c, ok := candidate[name]
	if !ok {
		fail("%s: the candidate's evaluation reported no value", name)
		return m
	}
	m.Candidate = &c
	if th.Min != nil && c < *th.Min {
		fail("%s %s is below the minimum %s", name, num(c), num(*th.Min))
	}
	if th.Max != nil && c > *th.Max {
		fail("%s %s is above the maximum %s", name, num(c), num(*th.Max))
	}
	ch, ok := champion[name]
	if !ok {
		return m
	}
	m.Champion = &ch
	drop := ch - c // how much worse the candidate is
	if m.Direction == manifests.DirectionLower {
		drop = c - ch
	}
	m.Drop = &drop
	worse := "below"
	if m.Direction == manifests.DirectionLower {
		worse = "above"
	}
	if th.MaxDrop != nil && drop > *th.MaxDrop+tolerance {
		fail("%s %s is %s %s the champion's %s (maxDrop %s)", name, num(c), num(drop), worse, num(ch), num(*th.MaxDrop))
	}
	if ch != 0 {
		rel := drop / math.Abs(ch)
		m.RelativeDrop = &rel
		if th.MaxRelativeDrop != nil && rel > *th.MaxRelativeDrop+tolerance {
			fail("%s %s is %.1f%% %s the champion's %s (maxRelativeDrop %s)", name, num(c), 100*rel, worse, num(ch), num(*th.MaxRelativeDrop))
		}
	} else if th.MaxRelativeDrop != nil && drop > tolerance {
		fail("%s %s is worse than the champion's 0, by any share (maxRelativeDrop %s)", name, num(c), num(*th.MaxRelativeDrop))
	}
	return m
}

// num renders a metric value in the fewest digits that are exact to 4
// decimals: 0.9, 0.9512, 12.
func num(f float64) string {
	return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'f', -1, 64)
}
