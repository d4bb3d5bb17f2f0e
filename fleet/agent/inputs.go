package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

// Names of the runtime metrics the agent reads for drift.
const (
	InputFeatureMetric  = "cairn_input_feature"
	InputCategoryMetric = "cairn_input_category_total"
)

// Bounds on what one scrape may report.
const (
	maxInputFeatures   = 256
	maxInputBounds     = 1024
	maxInputCategories = 256
	maxInputName       = 128
	maxInputBody       = 4 << 20
	// maxCount is the largest count taken: exact in a float64.
	maxCount = 1 << 53
)

// ParseInputs reads the cumulative live input histograms of a runtime's
// metrics document: Prometheus text with cairn_input_feature histograms
// (label feature) and cairn_input_category_total counters (labels feature,
// category), or the JSON of the demo runtime, whose "inputs" object maps
// each feature to a fleet.FeatureHistogram. Other metrics are ignored. A
// document that breaks the format, a non-integral or decreasing cumulative
// count, a non-finite bound, or more features, bounds or categories than
// the limits is refused with an error.
func ParseInputs(body []byte) (map[string]fleet.FeatureHistogram, error) {
	if len(body) > maxInputBody {
		return nil, fmt.Errorf("runtime inputs: %d bytes, at most %d", len(body), maxInputBody)
	}
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		return parseInputsJSON(body)
	}
	return parseInputsText(body)
}

func parseInputsJSON(body []byte) (map[string]fleet.FeatureHistogram, error) {
	var doc struct {
		Inputs map[string]fleet.FeatureHistogram `json:"inputs"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("runtime inputs: %w", err)
	}
	if doc.Inputs == nil {
		return map[string]fleet.FeatureHistogram{}, nil
	}
	if len(doc.Inputs) > maxInputFeatures {
		return nil, fmt.Errorf("runtime inputs: %d features, at most %d", len(doc.Inputs), maxInputFeatures)
	}
	for name, h := range doc.Inputs {
		if err := checkInput(name, h); err != nil {
			return nil, fmt.Errorf("runtime inputs: %w", err)
		}
	}
	return doc.Inputs, nil
}

// checkInput validates one feature's histogram as it will be reported.
func checkInput(name string, h fleet.FeatureHistogram) error {
	if name == "" || len(name) > maxInputName {
		return fmt.Errorf("feature name %q: want 1 to %d bytes", name, maxInputName)
	}
	if len(h.Bounds) > maxInputBounds {
		return fmt.Errorf("feature %s: %d bounds, at most %d", name, len(h.Bounds), maxInputBounds)
	}
	numeric := len(h.Counts) > 0 || len(h.Bounds) > 0
	if numeric == (len(h.Categories) > 0) {
		return fmt.Errorf("feature %s: want either bucket counts or category counts", name)
	}
	if len(h.Categories) > maxInputCategories {
		return fmt.Errorf("feature %s: %d categories, at most %d", name, len(h.Categories), maxInputCategories)
	}
	if numeric {
		if err := (drift.Live{Bounds: h.Bounds, Counts: h.Counts}).Validate(); err != nil {
			return fmt.Errorf("feature %s: %w", name, err)
		}
	}
	for c, n := range h.Categories {
		if c == "" || len(c) > maxInputName {
			return fmt.Errorf("feature %s: category %q: want 1 to %d bytes", name, c, maxInputName)
		}
		if n < 0 || n > maxCount {
			return fmt.Errorf("feature %s: category %s: count %d out of range", name, c, n)
		}
	}
	return nil
}

func parseInputsText(body []byte) (map[string]fleet.FeatureHistogram, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("runtime inputs: %w", err)
	}
	out := map[string]fleet.FeatureHistogram{}
	if f := fams[InputFeatureMetric]; f != nil {
		if f.GetType() != dto.MetricType_HISTOGRAM {
			return nil, fmt.Errorf("runtime inputs: %s is a %s, want a histogram", InputFeatureMetric, f.GetType())
		}
		for _, m := range f.GetMetric() {
			name := label(m, "feature")
			if _, dup := out[name]; dup {
				return nil, fmt.Errorf("runtime inputs: feature %q twice", name)
			}
			h, err := histogramCounts(m.GetHistogram())
			if err != nil {
				return nil, fmt.Errorf("runtime inputs: feature %q: %w", name, err)
			}
			if err := checkInput(name, h); err != nil {
				return nil, fmt.Errorf("runtime inputs: %w", err)
			}
			out[name] = h
			if len(out) > maxInputFeatures {
				return nil, fmt.Errorf("runtime inputs: more than %d features", maxInputFeatures)
			}
		}
	}
	if f := fams[InputCategoryMetric]; f != nil {
		if t := f.GetType(); t != dto.MetricType_COUNTER && t != dto.MetricType_UNTYPED {
			return nil, fmt.Errorf("runtime inputs: %s is a %s, want a counter", InputCategoryMetric, t)
		}
		for _, m := range f.GetMetric() {
			name, cat := label(m, "feature"), label(m, "category")
			v := m.GetCounter().GetValue()
			if m.Counter == nil {
				v = m.GetUntyped().GetValue()
			}
			n, err := count(v)
			if err != nil {
				return nil, fmt.Errorf("runtime inputs: feature %q category %q: %w", name, cat, err)
			}
			h := out[name]
			if len(h.Bounds) > 0 || len(h.Counts) > 0 {
				return nil, fmt.Errorf("runtime inputs: feature %q is both a histogram and categorical", name)
			}
			if h.Categories == nil {
				h.Categories = map[string]int64{}
			}
			if _, dup := h.Categories[cat]; dup {
				return nil, fmt.Errorf("runtime inputs: feature %q category %q twice", name, cat)
			}
			h.Categories[cat] = n
			if err := checkInput(name, h); err != nil {
				return nil, fmt.Errorf("runtime inputs: %w", err)
			}
			out[name] = h
			if len(out) > maxInputFeatures {
				return nil, fmt.Errorf("runtime inputs: more than %d features", maxInputFeatures)
			}
		}
	}
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// count reads a counter value that must be a whole number of observations.
func count(v float64) (int64, error) {
	if math.IsNaN(v) || v < 0 || v > maxCount || v != math.Trunc(v) {
		return 0, fmt.Errorf("count %g is not a whole number in [0, 2^53]", v)
	}
	return int64(v), nil
}

// histogramCounts turns cumulative Prometheus buckets into per-bucket counts:
// Counts[i] in (Bounds[i-1], Bounds[i]], the last above every bound.
func histogramCounts(h *dto.Histogram) (fleet.FeatureHistogram, error) {
	if h == nil {
		return fleet.FeatureHistogram{}, errors.New("no histogram")
	}
	total, err := count(float64(h.GetSampleCount()))
	if h.SampleCountFloat != nil {
		total, err = count(h.GetSampleCountFloat())
	}
	if err != nil {
		return fleet.FeatureHistogram{}, fmt.Errorf("sample count: %w", err)
	}
	bs := slices.Clone(h.GetBucket())
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].GetUpperBound() < bs[j].GetUpperBound() })
	var out fleet.FeatureHistogram
	var prev int64
	for _, b := range bs {
		ub := b.GetUpperBound()
		c, err := count(float64(b.GetCumulativeCount()))
		if b.CumulativeCountFloat != nil {
			c, err = count(b.GetCumulativeCountFloat())
		}
		if err != nil {
			return out, fmt.Errorf("bucket le=%g: %w", ub, err)
		}
		if c < prev {
			return out, fmt.Errorf("bucket le=%g: cumulative count %d below the previous %d", ub, c, prev)
		}
		if math.IsInf(ub, 1) {
			if c != total {
				return out, fmt.Errorf("bucket le=+Inf: %d, but the sample count is %d", c, total)
			}
			continue
		}
		if math.IsNaN(ub) || math.IsInf(ub, -1) {
			return out, fmt.Errorf("bucket le=%g: bound must be finite", ub)
		}
		if n := len(out.Bounds); n > 0 && ub == out.Bounds[n-1] {
			return out, fmt.Errorf("bucket le=%g twice", ub)
		}
		out.Bounds = append(out.Bounds, ub)
		out.Counts = append(out.Counts, c-prev)
		prev = c
		if len(out.Bounds) > maxInputBounds {
			return out, fmt.Errorf("more than %d buckets", maxInputBounds)
		}
	}
	if total < prev {
		return out, fmt.Errorf("sample count %d below the cumulative bucket count %d", total, prev)
	}
	out.Counts = append(out.Counts, total-prev)
	return out, nil
}

// inputScrape is the last cumulative scrape of one release's runtime.
type inputScrape struct {
	digest string
	at     time.Time
	inputs map[string]fleet.FeatureHistogram
}

// inputDelta is what cur counted since prev: per feature, the difference
// of the cumulative counts, or cur's own counts where the runtime started
// over (a count went down or the bounds changed). Features with nothing
// new are left out.
func inputDelta(prev, cur map[string]fleet.FeatureHistogram) map[string]fleet.FeatureHistogram {
	out := map[string]fleet.FeatureHistogram{}
	for name, c := range cur {
		p, had := prev[name]
		var d fleet.FeatureHistogram
		if len(c.Counts) > 0 {
			l := drift.Live{Bounds: c.Bounds, Counts: c.Counts}
			if had {
				l, _ = l.Sub(drift.Live{Bounds: p.Bounds, Counts: p.Counts})
			}
			if l.Total() > 0 {
				d.Bounds, d.Counts = slices.Clone(l.Bounds), slices.Clone(l.Counts)
			}
		}
		if len(c.Categories) > 0 {
			reset := false
			for k, n := range c.Categories {
				if n < p.Categories[k] {
					reset = true
				}
			}
			for k, n := range c.Categories {
				if !reset {
					n -= p.Categories[k]
				}
				if n > 0 {
					if d.Categories == nil {
						d.Categories = map[string]int64{}
					}
					d.Categories[k] = n
				}
			}
		}
		if len(d.Counts) > 0 || len(d.Categories) > 0 {
			out[name] = d
		}
	}
	return out
}

// fetchInputs scrapes a runtime's metrics URL for its input histograms.
func fetchInputs(ctx context.Context, hc *http.Client, u string) (map[string]fleet.FeatureHistogram, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4, application/json;q=0.5")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("scrape %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxInputBody+1))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	in, err := ParseInputs(body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", u, err)
	}
	return in, nil
}

// FormatInputs writes inputs as Prometheus text, the way a runtime exports
// them (cumulative buckets, +Inf, _sum left at 0).
func FormatInputs(w io.Writer, inputs map[string]fleet.FeatureHistogram) error {
	names := make([]string, 0, len(inputs))
	for n := range inputs {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	esc := func(s string) string {
		return strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`).Replace(s)
	}
	fmt.Fprintf(&b, "# HELP %s Live values of an input feature.\n# TYPE %s histogram\n", InputFeatureMetric, InputFeatureMetric)
	for _, n := range names {
		h := inputs[n]
		if len(h.Counts) == 0 {
			continue
		}
		var cum int64
		for i, ub := range h.Bounds {
			cum += h.Counts[i]
			fmt.Fprintf(&b, "%s_bucket{feature=\"%s\",le=\"%s\"} %d\n", InputFeatureMetric, esc(n), formatBound(ub), cum)
		}
		cum += h.Counts[len(h.Bounds)]
		fmt.Fprintf(&b, "%s_bucket{feature=\"%s\",le=\"+Inf\"} %d\n", InputFeatureMetric, esc(n), cum)
		fmt.Fprintf(&b, "%s_sum{feature=\"%s\"} 0\n%s_count{feature=\"%s\"} %d\n", InputFeatureMetric, esc(n), InputFeatureMetric, esc(n), cum)
	}
	fmt.Fprintf(&b, "# HELP %s Live values of a categorical input feature.\n# TYPE %s counter\n", InputCategoryMetric, InputCategoryMetric)
	for _, n := range names {
		h := inputs[n]
		cats := make([]string, 0, len(h.Categories))
		for c := range h.Categories {
			cats = append(cats, c)
		}
		slices.Sort(cats)
		for _, c := range cats {
			fmt.Fprintf(&b, "%s{feature=\"%s\",category=\"%s\"} %d\n", InputCategoryMetric, esc(n), esc(c), h.Categories[c])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// formatBound writes a bucket bound so that it parses back to the same float.
func formatBound(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
