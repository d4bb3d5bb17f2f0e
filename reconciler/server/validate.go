package server

import (
	"fmt"
	"math"
	"regexp"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$`)
	labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$`)
	phases  = map[string]bool{fleet.PhasePending: true, fleet.PhaseDownloading: true, fleet.PhaseInstalling: true,
		fleet.PhaseVerifying: true, fleet.PhaseHealthy: true, fleet.PhaseFailed: true, fleet.PhaseRolledBack: true}
)

// Bounds of what a target may send.
const (
	maxLabels   = 64
	maxReleases = 256
	maxMetrics  = 256
	maxFeatures = 256
	maxLog      = 200
	maxText     = 4096
	maxBins     = 1024
)

// ValidateEnroll checks an enrollment request (the token aside).
func ValidateEnroll(req fleet.EnrollRequest) error {
	if !nameRE.MatchString(req.Name) {
		return fmt.Errorf("name %q: want 1-253 letters, digits, '.', '_' or '-'", req.Name)
	}
	if len(req.Labels) > maxLabels {
		return fmt.Errorf("%d labels: at most %d", len(req.Labels), maxLabels)
	}
	for k, v := range req.Labels {
		if !labelRE.MatchString(k) {
			return fmt.Errorf("label key %q is not valid", k)
		}
		if len(v) > 253 {
			return fmt.Errorf("label %s: value longer than 253", k)
		}
	}
	return validateFacts(req.Facts)
}

func validateFacts(f fleet.Facts) error {
	if f.Memory < 0 || f.CPUs < 0 || f.DiskFree < 0 {
		return fmt.Errorf("facts: negative memory, cpus or disk")
	}
	if len(f.Accelerators) > 32 {
		return fmt.Errorf("facts: more than 32 accelerators")
	}
	for _, s := range append([]string{f.Arch, f.OS, f.OSVersion, f.Kernel, f.Hostname, f.TimeZone}, f.Accelerators...) {
		if len(s) > 253 {
			return fmt.Errorf("facts: value longer than 253")
		}
	}
	return nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// validateInputs checks a window of live input counts.
func validateInputs(w *fleet.InputWindow) error {
	if w == nil {
		return nil
	}
	if w.End.Before(w.Start) {
		return fmt.Errorf("window ends %s before it starts %s", w.End, w.Start)
	}
	if len(w.Features) > maxFeatures {
		return fmt.Errorf("%d features: at most %d", len(w.Features), maxFeatures)
	}
	for k, h := range w.Features {
		if k == "" || len(k) > 128 {
			return fmt.Errorf("feature name %q: want 1 to 128 bytes", k)
		}
		numeric := len(h.Bounds) > 0 || len(h.Counts) > 0
		if numeric == (len(h.Categories) > 0) {
			return fmt.Errorf("feature %q: want either bucket counts or category counts", k)
		}
		if len(h.Bounds) > maxBins || len(h.Categories) > maxBins {
			return fmt.Errorf("feature %q: more than %d buckets or categories", k, maxBins)
		}
		if numeric {
			if err := (drift.Live{Bounds: h.Bounds, Counts: h.Counts}).Validate(); err != nil {
				return fmt.Errorf("feature %q: %w", k, err)
			}
		}
		for c, n := range h.Categories {
			if c == "" || len(c) > 128 || n < 0 {
				return fmt.Errorf("feature %q: category %q: empty or long name or negative count", k, c)
			}
		}
	}
	return nil
}

// ValidateStatus checks a status report.
func ValidateStatus(r fleet.StatusReport) error {
	if r.Facts != nil {
		if err := validateFacts(*r.Facts); err != nil {
			return err
		}
	}
	if len(r.Releases) > maxReleases {
		return fmt.Errorf("%d releases: at most %d", len(r.Releases), maxReleases)
	}
	for i, rs := range r.Releases {
		if !nameRE.MatchString(rs.Release) {
			return fmt.Errorf("releases[%d]: release name %q is not valid", i, rs.Release)
		}
		if !phases[rs.Phase] {
			return fmt.Errorf("releases[%d]: unknown phase %q", i, rs.Phase)
		}
		if len(rs.Message) > maxText || len(rs.Digest) > 256 || len(rs.Desired) > 256 || len(rs.Previous) > 256 {
			return fmt.Errorf("releases[%d]: field too long", i)
		}
		if err := validateInputs(rs.Inputs); err != nil {
			return fmt.Errorf("releases[%d]: inputs: %w", i, err)
		}
	}
	if len(r.Metrics) > maxMetrics {
		return fmt.Errorf("%d metrics: at most %d", len(r.Metrics), maxMetrics)
	}
	for k, v := range r.Metrics {
		if len(k) > 128 || !finite(v) {
			return fmt.Errorf("metric %q: name too long or value not finite", k)
		}
	}
	if len(r.Features) > maxFeatures {
		return fmt.Errorf("%d features: at most %d", len(r.Features), maxFeatures)
	}
	for k, f := range r.Features {
		if len(k) > 128 || len(f.Bins) > maxBins || len(f.Counts) > maxBins || f.Count < 0 {
			return fmt.Errorf("feature %q: too long or negative count", k)
		}
		for _, v := range append([]float64{f.Mean, f.Variance, f.Min, f.Max}, f.Bins...) {
			if !finite(v) {
				return fmt.Errorf("feature %q: value not finite", k)
			}
		}
	}
	if len(r.Log) > maxLog {
		return fmt.Errorf("%d log entries: at most %d", len(r.Log), maxLog)
	}
	for i, e := range r.Log {
		if len(e.Message) > maxText || len(e.Phase) > 64 || len(e.Release) > 253 {
			return fmt.Errorf("log[%d]: field too long", i)
		}
	}
	return nil
}
