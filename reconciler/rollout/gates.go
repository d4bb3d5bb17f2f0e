package rollout

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

// Gate outcomes.
const (
	GatePass         = "pass"
	GateFail         = "fail"
	GateInconclusive = "inconclusive" // fewer samples than minSamples
	GateNoData       = "no data"
)

// maxRecent bounds the samples a gate keeps for p95: the most recent ones.
const maxRecent = 1024

// GateWindow holds the samples the gates of the current wave gathered
// during its bake: one per target report (a report is known by its time),
// from the targets of the started waves running the new model.
type GateWindow struct {
	Wave  int       `json:"wave"`
	Since time.Time `json:"since"`
	// Seen is the time of the last report sampled per target.
	Seen map[string]time.Time `json:"seen,omitempty"`
	// Stats are per gate metric.
	Stats map[string]GateStats `json:"stats,omitempty"`
	// Outcomes are the last outcome per gate metric, for events on change.
	Outcomes map[string]string `json:"outcomes,omitempty"`
	// Waived is set when an operator resumed a rollout a gate without data
	// paused: no data and inconclusive pass for the rest of the wave.
	Waived bool `json:"waived,omitempty"`
}

// GateStats aggregates the samples of one metric.
type GateStats struct {
	Count  int       `json:"count"`
	Sum    float64   `json:"sum"`
	Max    float64   `json:"max"`
	Min    float64   `json:"min"`
	Recent []float64 `json:"recent,omitempty"` // ring of the last maxRecent
	Next   int       `json:"next,omitempty"`   // next ring slot once full
}

func (s *GateStats) add(v float64) {
	if s.Count == 0 || v > s.Max {
		s.Max = v
	}
	if s.Count == 0 || v < s.Min {
		s.Min = v
	}
	s.Count++
	s.Sum += v
	if len(s.Recent) < maxRecent {
		s.Recent = append(s.Recent, v)
		return
	}
	s.Recent[s.Next] = v
	s.Next = (s.Next + 1) % maxRecent
}

// value is the aggregate of the samples (Count > 0).
func (s GateStats) value(agg string) float64 {
	switch agg {
	case manifests.AggregateMax:
		return s.Max
	case manifests.AggregateMin:
		return s.Min
	case manifests.AggregateP95:
		v := slices.Clone(s.Recent)
		slices.Sort(v)
		// Nearest rank: the smallest value at or above 95% of the samples.
		i := int(math.Ceil(0.95*float64(len(v)))) - 1
		return v[max(i, 0)]
	default:
		return s.Sum / float64(s.Count)
	}
}

// GateResult is one gate's verdict over the bake so far.
type GateResult struct {
	Gate    manifests.Gate
	Outcome string
	Value   float64
	Samples int
}

func (g GateResult) String() string {
	agg := g.Gate.Aggregate
	if agg == "" {
		agg = manifests.AggregateMean
	}
	switch g.Outcome {
	case GateNoData:
		return fmt.Sprintf("gate %s: no data", g.Gate.Metric)
	case GateInconclusive:
		return fmt.Sprintf("gate %s: inconclusive, %d of %d samples", g.Gate.Metric, g.Samples, minSamples(g.Gate))
	}
	s := fmt.Sprintf("gate %s %s=%g", g.Gate.Metric, agg, g.Value)
	switch {
	case g.Gate.Max != nil && g.Value > *g.Gate.Max:
		s += fmt.Sprintf(" > max %g", *g.Gate.Max)
	case g.Gate.Min != nil && g.Value < *g.Gate.Min:
		s += fmt.Sprintf(" < min %g", *g.Gate.Min)
	}
	return fmt.Sprintf("%s over %d samples", s, g.Samples)
}

func minSamples(g manifests.Gate) int { return max(g.MinSamples, 1) }

// Evaluate gives a gate's outcome from its stats.
func Evaluate(g manifests.Gate, s GateStats) GateResult {
	r := GateResult{Gate: g, Samples: s.Count}
	switch {
	case s.Count == 0:
		r.Outcome = GateNoData
		return r
	case s.Count < minSamples(g):
		r.Outcome = GateInconclusive
		return r
	}
	r.Value = s.value(g.Aggregate)
	r.Outcome = GatePass
	if (g.Max != nil && r.Value > *g.Max) || (g.Min != nil && r.Value < *g.Min) {
		r.Outcome = GateFail
	}
	return r
}

// WaveGates are the gates that hold a wave of a rollout under policy p, as
// the engine evaluates them and cairn plan lists them: every gate of the
// policy holds every wave, over that wave's bake.
func WaveGates(p manifests.RolloutPolicy, wave int) []manifests.Gate {
	return p.Spec.Gates
}

// sampleGates adds to the bake's window the reports not sampled yet of the
// targets of the started waves running the new model healthily. A new
// wave or a restarted bake starts a new window.
func (e *engine) sampleGates() {
	st := &e.st
	gates := WaveGates(e.in.Policy, st.Wave)
	if len(gates) == 0 {
		st.Gates = nil
		return
	}
	w := GateWindow{Wave: st.Wave, Since: st.BakeStarted}
	if p := st.Gates; p != nil && p.Wave == st.Wave && p.Since.Equal(st.BakeStarted) {
		// Step is pure: the previous state's maps and rings are copied once
		// here, then added to in place.
		w = *p
		w.Seen, w.Stats, w.Outcomes = maps.Clone(p.Seen), maps.Clone(p.Stats), maps.Clone(p.Outcomes)
		for m, s := range w.Stats {
			s.Recent = slices.Clone(s.Recent)
			w.Stats[m] = s
		}
	}
	if w.Seen == nil {
		w.Seen, w.Stats, w.Outcomes = map[string]time.Time{}, map[string]GateStats{}, map[string]string{}
	}
	for i, n := range e.names {
		t := e.at(i)
		if int(e.wave[i]) > st.Wave || !healthy(t, st.Target.Digest) || t.ReportedAt.IsZero() {
			continue
		}
		if last, ok := w.Seen[n]; ok && last.Equal(t.ReportedAt) {
			continue
		}
		w.Seen[n] = t.ReportedAt
		for _, g := range gates {
			v, ok := t.Metrics[g.Metric]
			if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			s := w.Stats[g.Metric]
			s.add(v)
			w.Stats[g.Metric] = s
		}
	}
	st.Gates = &w
}

// gateResults evaluates every gate of the policy over the current window,
// recording an event for each gate whose outcome changed.
func (e *engine) gateResults() []GateResult {
	var out []GateResult
	w := e.st.Gates
	if w == nil {
		return nil
	}
	for _, g := range WaveGates(e.in.Policy, e.st.Wave) {
		r := Evaluate(g, w.Stats[g.Metric])
		if w.Outcomes[g.Metric] != r.Outcome {
			if r.Outcome != GatePass || w.Outcomes[g.Metric] != "" {
				e.event(manifests.EventGateChanged, gateReason(r.Outcome),
					fmt.Sprintf("wave %d/%d: %s", e.st.Wave+1, len(e.waves), r), nil)
			}
			w.Outcomes[g.Metric] = r.Outcome
		}
		out = append(out, r)
	}
	return out
}

func gateReason(outcome string) string {
	switch outcome {
	case GateFail:
		return ReasonGateFailing
	case GateNoData, GateInconclusive:
		return ReasonGateNoData
	}
	return ReasonGatePassing
}

// gates decides the wave's gates: "" when they let the wave go on (now or at
// the end of the bake), else why they hold it. At the end of the bake a
// failing gate fails the rollout; a gate without enough data does what its
// onNoData says. It reports whether it ended the step (failed or paused).
func (e *engine) gates(bakeEnd time.Time) (holding string, ended bool) {
	e.sampleGates()
	results := e.gateResults()
	var fails, nodata, pauses []string
	for _, r := range results {
		switch {
		case r.Outcome == GateFail:
			fails = append(fails, r.String())
		case r.Outcome == GatePass:
		case e.st.Gates.Waived || r.Gate.OnNoData == manifests.OnNoDataPass:
			// Lets the wave go on: its GateChanged event says it had no data.
		case r.Gate.OnNoData == manifests.OnNoDataPause:
			pauses = append(pauses, r.String())
		default:
			nodata = append(nodata, r.String())
		}
	}
	if e.in.Now.Before(bakeEnd) {
		return strings.Join(slices.Concat(fails, nodata, pauses), "; "), false
	}
	switch {
	case len(fails) > 0:
		e.fail(ReasonGateFailed, "gates failing after the bake: "+strings.Join(fails, "; "))
		return "", true
	case len(nodata) > 0:
		e.fail(ReasonGateNoData, "gates without data after the bake: "+strings.Join(nodata, "; "))
		return "", true
	case len(pauses) > 0:
		st := &e.st
		msg := "gates without data after the bake: " + strings.Join(pauses, "; ")
		st.Phase, st.PausedBy, st.Reason, st.Message = PhasePaused, "gate", ReasonGateNoData, msg+"; paused for an operator"
		st.Gates.Waived = true // a resume lets the wave go on
		e.event(manifests.EventRolloutPaused, ReasonGateNoData, st.Message, nil)
		e.assign(false)
		return "", true
	}
	return "", false
}
