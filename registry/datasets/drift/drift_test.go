package drift

import (
	"math"
	"testing"
)

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-6 {
		t.Errorf("%s = %.9g, want %.9g", what, got, want)
	}
}

func nearSlice(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
}

func TestRebin(t *testing.T) {
	two := Reference{Edges: []float64{0, 1, 2}, Counts: []int64{20, 20}}
	for _, tc := range []struct {
		name string
		ref  Reference
		live Live
		want []float64 // [under, bins..., over]
	}{
		{"same edges", two, Live{Bounds: []float64{0, 1, 2}, Counts: []int64{0, 25, 75, 0}}, []float64{0, 25, 75, 0}},
		// (-inf,-1] is underflow; (-1,0] too; (0,1] bin 0; (1,3] half in
		// bin 1, half above 2; (3,+inf) overflow.
		{"different edges with overflow", two, Live{Bounds: []float64{-1, 0, 1, 3}, Counts: []int64{5, 0, 10, 20, 5}}, []float64{5, 10, 10, 15}},
		// (-inf,0] holds the first edge itself, which bin 0 counts.
		{"values on the first edge", two, Live{Bounds: []float64{0, 1}, Counts: []int64{4, 0, 0}}, []float64{0, 4, 0, 0}},
		// (-inf,0.5] sits at 0.5 (bin 0); (0.5,1.5] half and half;
		// (1.5,+inf) sits at 1.5 (bin 1).
		{"unbounded buckets inside the range", two, Live{Bounds: []float64{0.5, 1.5}, Counts: []int64{10, 20, 10}}, []float64{0, 20, 20, 0}},
		// (-1,0.5]: 1/1.5 below the range, 0.5/1.5 in bin 0.
		{"bucket straddling the low edge", two, Live{Bounds: []float64{-1, 0.5}, Counts: []int64{0, 30, 0}}, []float64{20, 10, 0, 0}},
		// Below the range, except (-4,+inf): above -4 could be anywhere, so it sits at the first edge.
		{"all below", two, Live{Bounds: []float64{-5, -4}, Counts: []int64{1, 2, 3}}, []float64{3, 3, 0, 0}},
		// (-inf,5]: at most 5, sits at the last edge.
		{"all above", two, Live{Bounds: []float64{5}, Counts: []int64{2, 1}}, []float64{0, 0, 2, 1}},
		{"empty live", two, Live{Bounds: []float64{0, 1, 2}, Counts: []int64{0, 0, 0, 0}}, []float64{0, 0, 0, 0}},
		// A live bucket over [0.25, 0.75] within bin 0 of four equal bins.
		{"fine reference", Reference{Edges: []float64{0, 0.25, 0.5, 0.75, 1}, Counts: []int64{1, 1, 1, 1}},
			Live{Bounds: []float64{0.25, 0.75}, Counts: []int64{0, 8, 0}}, []float64{0, 0, 4, 4, 0, 0}},
		// A constant training column: the zero-width bin takes the buckets
		// that sit on it, the rest over- or underflows.
		{"zero-width reference", Reference{Edges: []float64{5, 5}, Counts: []int64{10}},
			Live{Bounds: []float64{5}, Counts: []int64{7, 3}}, []float64{0, 7, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.live.Validate(); err != nil {
				t.Fatal(err)
			}
			got := Rebin(tc.ref, tc.live)
			nearSlice(t, "Rebin", got, tc.want)
			var sum float64
			for _, v := range got {
				sum += v
			}
			near(t, "rebinned mass", sum, float64(tc.live.Total()))
		})
	}
}

// The expected values are worked out by hand in the comments (natural
// logarithms for PSI, base 2 for JS).
func TestStatistics(t *testing.T) {
	for _, tc := range []struct {
		name        string
		ref, live   []float64
		psi, js, ks float64
	}{
		{"identical", []float64{0, 10, 30, 0}, []float64{0, 1, 3, 0}, 0, 0, 0},
		// r = (.5,.5), l = (.25,.75):
		// PSI = (−.25)ln(.5) + (.25)ln(1.5) = .173287 + .101366
		// M = (.375,.625); JSD = ½[.5log2(.5/.375)+.5log2(.5/.625)]
		//   + ½[.25log2(.25/.375)+.75log2(.75/.625)] = .048795; JS = √JSD
		// KS: cumulative .5 vs .25
		{"shift", []float64{0, 20, 20, 0}, []float64{0, 25, 75, 0}, 0.274653072, 0.220895769, 0.25},
		// An empty live bin where the reference has half the mass:
		// PSI = (1−.5)ln(1/.5) + (1e-4−.5)ln(1e-4/.5) = .346574 + 4.257745
		// JS: M = (.75,.25); JSD = ½[.5log2(.5/.75)+.5log2(.5/.25)] + ½[log2(1/.75)]
		//   = ½(.207519 + .415037) = .311278
		{"empty live bin", []float64{10, 10}, []float64{20, 0}, 4.604318467, 0.557923045, 0.5},
		// Overflow mass (see TestRebin): r = (0,.5,.5,0), l = (.125,.25,.25,.375):
		// PSI = .1249·ln(1250) + 2·.173287 + .3749·ln(3750)
		// JS: M = (.0625,.375,.375,.1875); KL(r‖M) = log2(.5/.375) = .415037,
		//   KL(l‖M) = .125 + .5·log2(.25/.375) + .375 = .207519; JSD = .311278
		// KS: cumulative (0,.5,1,1) vs (.125,.375,.625,1): .375
		{"overflow", []float64{0, 20, 20, 0}, []float64{5, 10, 10, 15}, 4.322466573, 0.557923045, 0.375},
	} {
		t.Run(tc.name, func(t *testing.T) {
			near(t, "PSI", PSI(tc.ref, tc.live), tc.psi)
			near(t, "JS", JS(tc.ref, tc.live), tc.js)
			near(t, "KS", KS(tc.ref, tc.live), tc.ks)
		})
	}
	if !math.IsNaN(PSI([]float64{1, 1}, []float64{0, 0})) || !math.IsNaN(JS(nil, nil)) || !math.IsNaN(KS([]float64{1}, []float64{1, 2})) {
		t.Error("empty or mismatched sides must give NaN")
	}
	if js := JS([]float64{1, 0}, []float64{0, 1}); math.Abs(js-1) > 1e-12 {
		t.Errorf("JS of disjoint distributions = %g, want 1", js)
	}
}

func TestCompare(t *testing.T) {
	ref := EqualWidth(0, 2, []int64{20, 20})
	nearSlice(t, "edges", ref.Edges, []float64{0, 1, 2})
	s := Compare(ref, Live{Bounds: []float64{-1, 0, 1, 3}, Counts: []int64{5, 0, 10, 20, 5}})
	near(t, "PSI", s.PSI, 4.322466573)
	near(t, "KS", s.KS, 0.375)
	if s.Samples != 40 {
		t.Errorf("samples = %d, want 40", s.Samples)
	}
	// Categories: ref (a .5, b .5), live (a .25, b .25, c .5), over a,b,c:
	// PSI = 2·(−.25)ln(.5) + (.5−1e-4)ln(.5/1e-4) = .346574 + 4.258597
	c := CompareCategories(map[string]int64{"a": 5, "b": 5}, map[string]int64{"a": 1, "b": 1, "c": 2})
	near(t, "category PSI", c.PSI, 0.346573590+0.4999*math.Log(5000))
	near(t, "category KS", c.KS, 0.5)
}

func TestReport(t *testing.T) {
	r := Summarize([]Feature{
		{Name: "rms", Stats: Stats{PSI: 0.4, JS: 0.2, KS: 0.3, Samples: 900}},
		{Name: "kurtosis", Stats: Stats{PSI: 0.1, JS: 0.3, KS: 0.1, Samples: 800}},
		{Name: "peak", Stats: Stats{PSI: 3, JS: 0.9, KS: 0.9, Samples: 20}},
	}, 100)
	if len(r.Features) != 2 || r.Features[0].Name != "rms" || len(r.Inconclusive) != 1 || r.Inconclusive[0].Name != "peak" {
		t.Fatalf("report = %+v", r)
	}
	m := r.Metrics()
	for k, want := range map[string]float64{"drift_psi": 0.4, "drift_js": 0.3, "drift_ks": 0.3, "drift_samples": 800, "drift_psi:kurtosis": 0.1, "drift_js:rms": 0.2} {
		if m[k] != want {
			t.Errorf("%s = %g, want %g", k, m[k], want)
		}
	}
	if _, ok := m["drift_psi:peak"]; ok {
		t.Error("an inconclusive feature must not be a gate input")
	}
	if got := r.Worst(MetricJS, 1); got != "kurtosis=0.300" {
		t.Errorf("Worst = %q", got)
	}
	if Summarize(nil, 1).Metrics() != nil {
		t.Error("no conclusive feature must give no metrics (no data)")
	}
}

func TestValidate(t *testing.T) {
	for _, l := range []Live{
		{Bounds: []float64{1, 1}, Counts: []int64{0, 0, 0}},
		{Bounds: []float64{1}, Counts: []int64{0}},
		{Bounds: []float64{math.Inf(1)}, Counts: []int64{0, 0}},
		{Bounds: []float64{1}, Counts: []int64{-1, 0}},
	} {
		if l.Validate() == nil {
			t.Errorf("%+v: no error", l)
		}
	}
	for _, r := range []Reference{{Edges: []float64{0}, Counts: nil}, {Edges: []float64{1, 0}, Counts: []int64{1}}, {Edges: []float64{0, math.NaN()}, Counts: []int64{1}}} {
		if r.Validate() == nil {
			t.Errorf("%+v: no error", r)
		}
	}
}

func TestBoundsReproduceTheProfile(t *testing.T) {
	ref := EqualWidth(0, 2, []int64{3, 5})
	b := Bounds(ref)
	if len(b) != 4 || b[0] >= 0 || b[1] != 0 || b[3] != 2 {
		t.Fatalf("Bounds = %v", b)
	}
	// Values -1, 0, 0.5, 1.5, 2, 3 counted into those bounds as a runtime
	// would: (-inf,b0] (b0,0] (0,1] (1,2] (2,+inf).
	live := Live{Bounds: b, Counts: []int64{1, 1, 1, 2, 1}}
	nearSlice(t, "Rebin", Rebin(ref, live), []float64{1, 2, 2, 1})
	if got := Bounds(Reference{Edges: []float64{5, 5}, Counts: []int64{9}}); len(got) != 2 || got[1] != 5 {
		t.Errorf("zero-width Bounds = %v", got)
	}
}

func TestSub(t *testing.T) {
	a := Live{Bounds: []float64{1}, Counts: []int64{3, 4}}
	b := Live{Bounds: []float64{1}, Counts: []int64{5, 4}}
	if d, ok := b.Sub(a); !ok || d.Counts[0] != 2 || d.Counts[1] != 0 {
		t.Errorf("Sub = %v %v", d, ok)
	}
	if d, ok := a.Sub(b); ok || d.Counts[0] != 3 {
		t.Errorf("a reset must give the current counts: %v %v", d, ok)
	}
}
