package agent

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

func TestParseInputs(t *testing.T) {
	prom, err := os.ReadFile("testdata/inputs/runtime.prom")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseInputs(prom)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]fleet.FeatureHistogram{
		"rms":     {Bounds: []float64{-0.0001, 0, 1, 2}, Counts: []int64{1, 0, 3, 5, 1}},
		"machine": {Categories: map[string]int64{"pump": 7, "fan": 3}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Prometheus text: got %+v, want %+v", got, want)
	}
	js := `{"requests": 10, "inputs": {"rms": {"bounds": [-0.0001, 0, 1, 2], "counts": [1, 0, 3, 5, 1]}, "machine": {"categories": {"pump": 7, "fan": 3}}}}`
	if got, err := ParseInputs([]byte(js)); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("JSON: got %+v, %v", got, err)
	}
	if got, err := ParseInputs([]byte("up 1\n")); err != nil || len(got) != 0 {
		t.Fatalf("no inputs: got %+v, %v", got, err)
	}

	bucket := func(le, n string) string {
		return `cairn_input_feature_bucket{feature="x",le="` + le + `"} ` + n + "\n"
	}
	hist := "# TYPE cairn_input_feature histogram\n"
	for _, tc := range []struct{ name, body, err string }{
		{"decreasing buckets", hist + bucket("1", "5") + bucket("2", "3") + bucket("+Inf", "5") + "cairn_input_feature_count{feature=\"x\"} 5\n", "below the previous"},
		{"inf bucket disagrees", hist + bucket("1", "5") + bucket("+Inf", "6") + "cairn_input_feature_count{feature=\"x\"} 7\n", "sample count is 7"},
		{"fractional count", "# TYPE cairn_input_category_total counter\ncairn_input_category_total{feature=\"m\",category=\"a\"} 1.5\n", "whole number"},
		{"negative count", "# TYPE cairn_input_category_total counter\ncairn_input_category_total{feature=\"m\",category=\"a\"} -1\n", "whole number"},
		{"no feature label", hist + `cairn_input_feature_bucket{le="+Inf"} 1` + "\ncairn_input_feature_count 1\n", "feature name"},
		{"gauge", "# TYPE cairn_input_feature gauge\ncairn_input_feature{feature=\"x\"} 1\n", "want a histogram"},
		{"both kinds", hist + bucket("+Inf", "1") + "cairn_input_feature_count{feature=\"x\"} 1\n# TYPE cairn_input_category_total counter\ncairn_input_category_total{feature=\"x\",category=\"a\"} 1\n", "both"},
		{"broken text", "cairn_input_feature_bucket{feature=\"x\" 1\n", "runtime inputs"},
		{"JSON bounds", `{"inputs": {"x": {"bounds": [2, 1], "counts": [0, 0, 0]}}}`, "not ascending"},
		{"JSON counts", `{"inputs": {"x": {"bounds": [1], "counts": [1]}}}`, "want bounds+1"},
		{"JSON empty feature", `{"inputs": {"x": {}}}`, "either"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseInputs([]byte(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestInputDelta(t *testing.T) {
	prev := map[string]fleet.FeatureHistogram{
		"rms": {Bounds: []float64{1}, Counts: []int64{2, 3}},
		"m":   {Categories: map[string]int64{"a": 2}},
	}
	cur := map[string]fleet.FeatureHistogram{
		"rms":  {Bounds: []float64{1}, Counts: []int64{4, 3}},
		"m":    {Categories: map[string]int64{"a": 1, "b": 1}}, // a went down: the runtime restarted
		"peak": {Bounds: []float64{1}, Counts: []int64{0, 0}},
	}
	got := inputDelta(prev, cur)
	want := map[string]fleet.FeatureHistogram{
		"rms": {Bounds: []float64{1}, Counts: []int64{2, 0}},
		"m":   {Categories: map[string]int64{"a": 1, "b": 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("delta = %+v, want %+v", got, want)
	}
}

// FuzzParseInputs holds ParseInputs to what it promises: whatever it
// accepts is within the limits, every histogram is well formed, and the
// result written back as Prometheus text parses to the same thing.
func FuzzParseInputs(f *testing.F) {
	prom, _ := os.ReadFile("testdata/inputs/runtime.prom")
	f.Add(prom)
	f.Add([]byte(`{"inputs": {"rms": {"bounds": [0, 1], "counts": [1, 2, 3]}, "m": {"categories": {"a": 1}}}}`))
	f.Add([]byte("# TYPE cairn_input_feature histogram\ncairn_input_feature_bucket{feature=\"x\",le=\"1e300\"} 1\ncairn_input_feature_bucket{feature=\"x\",le=\"+Inf\"} 1\ncairn_input_feature_count{feature=\"x\"} 1\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := ParseInputs(body)
		if err != nil {
			return
		}
		if len(in) > maxInputFeatures {
			t.Fatalf("%d features accepted", len(in))
		}
		for name, h := range in {
			if err := checkInput(name, h); err != nil {
				t.Fatalf("accepted an invalid feature: %v", err)
			}
		}
		var buf bytes.Buffer
		if err := FormatInputs(&buf, in); err != nil {
			t.Fatal(err)
		}
		back, err := ParseInputs(buf.Bytes())
		if err != nil {
			t.Fatalf("re-parse of\n%s: %v", buf.String(), err)
		}
		if len(in) == 0 && len(back) == 0 {
			return
		}
		if !reflect.DeepEqual(in, back) {
			t.Fatalf("round trip changed the inputs:\n%+v\n%+v", in, back)
		}
	})
}

// The agent scrapes runtime.metrics at each report and sends what the
// runtime counted since the last delivered scrape of the same model.
func TestReportCarriesInputWindows(t *testing.T) {
	var mu sync.Mutex
	counts := []int64{1, 2, 3}
	rt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		FormatInputs(w, map[string]fleet.FeatureHistogram{"rms": {Bounds: []float64{0, 1}, Counts: slices.Clone(counts)}})
	}))
	defer rt.Close()
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	v1.Runtime.Metrics = rt.URL + "/metrics"
	api := newMemAPI()
	a := newTestAgent(t, t.TempDir(), api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	inputs := func() *fleet.InputWindow {
		a.Report(bg)
		r := api.reports[len(api.reports)-1]
		for _, rs := range r.Releases {
			if rs.Release == v1.Release {
				return rs.Inputs
			}
		}
		t.Fatalf("no status of %s in %+v", v1.Release, r)
		return nil
	}
	if w := inputs(); w != nil {
		t.Fatalf("the first scrape is the baseline, got %+v", w)
	}
	mu.Lock()
	counts = []int64{1, 5, 4}
	mu.Unlock()
	w := inputs()
	if w == nil || !slices.Equal(w.Features["rms"].Counts, []int64{0, 3, 1}) || w.End.Before(w.Start) {
		t.Fatalf("window = %+v, want rms counts [0 3 1]", w)
	}
	if w := inputs(); w != nil {
		t.Fatalf("nothing new counted, got %+v", w)
	}
}
