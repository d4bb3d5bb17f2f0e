package drift

import (
	"math"
	"slices"
	"strconv"
)

// Metric names a Report sets, usable by rollout gates and Release monitors.
// A feature's own value is the name, a colon and the feature:
// drift_psi:rms.
const (
	MetricPSI     = "drift_psi"
	MetricJS      = "drift_js"
	MetricKS      = "drift_ks"
	MetricSamples = "drift_samples"
)

// Feature is the drift of one input feature.
type Feature struct {
	Name string `json:"name"`
	Stats
}

// Report is the drift of every feature compared, worst (highest PSI) first.
// Features with fewer than the minimum samples are listed in Inconclusive
// and left out of the maxima.
type Report struct {
	Features     []Feature `json:"features"`
	Inconclusive []Feature `json:"inconclusive,omitempty"`
}

// Summarize sorts features into a Report: those with at least minSamples
// observations and finite statistics, worst first, and the others.
func Summarize(features []Feature, minSamples int64) Report {
	var r Report
	for _, f := range features {
		if f.Samples < max(minSamples, 1) || math.IsNaN(f.PSI) || math.IsNaN(f.JS) || math.IsNaN(f.KS) {
			r.Inconclusive = append(r.Inconclusive, f)
			continue
		}
		r.Features = append(r.Features, f)
	}
	slices.SortStableFunc(r.Features, func(a, b Feature) int {
		if a.PSI != b.PSI {
			if a.PSI > b.PSI {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	slices.SortStableFunc(r.Inconclusive, func(a, b Feature) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return r
}

// Max is the largest of each statistic over the conclusive features and
// the smallest sample count among them; ok is false when none is.
func (r Report) Max() (s Stats, ok bool) {
	for i, f := range r.Features {
		if i == 0 {
			s = f.Stats
			continue
		}
		s.PSI, s.JS, s.KS = math.Max(s.PSI, f.PSI), math.Max(s.JS, f.JS), math.Max(s.KS, f.KS)
		s.Samples = min(s.Samples, f.Samples)
	}
	return s, len(r.Features) > 0
}

// Metrics are the report as gate inputs: drift_psi, drift_js and drift_ks
// (maxima over features), drift_samples, and each feature's values under
// drift_psi:NAME and so on. An inconclusive report sets none, which gates
// read as no data.
func (r Report) Metrics() map[string]float64 {
	s, ok := r.Max()
	if !ok {
		return nil
	}
	m := map[string]float64{MetricPSI: s.PSI, MetricJS: s.JS, MetricKS: s.KS, MetricSamples: float64(s.Samples)}
	for _, f := range r.Features {
		m[MetricPSI+":"+f.Name] = f.PSI
		m[MetricJS+":"+f.Name] = f.JS
		m[MetricKS+":"+f.Name] = f.KS
	}
	return m
}

// Worst names the first n features with their value of metric (drift_psi,
// drift_js or drift_ks), highest first: "rms=0.41, kurtosis=0.12".
func (r Report) Worst(metric string, n int) string {
	fs := slices.Clone(r.Features)
	val := func(f Feature) float64 {
		switch metric {
		case MetricJS:
			return f.JS
		case MetricKS:
			return f.KS
		}
		return f.PSI
	}
	slices.SortStableFunc(fs, func(a, b Feature) int {
		va, vb := val(a), val(b)
		switch {
		case va > vb:
			return -1
		case va < vb:
			return 1
		}
		return 0
	})
	out := ""
	for i, f := range fs {
		if i == n {
			break
		}
		if i > 0 {
			out += ", "
		}
		out += f.Name + "=" + strconv.FormatFloat(val(f), 'f', 3, 64)
	}
	return out
}
