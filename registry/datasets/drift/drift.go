package drift

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Reference is a training histogram: len(Edges) = len(Counts)+1, ascending;
// bin i holds values in [Edges[i], Edges[i+1]) and the last bin also holds
// its upper edge, as registry/datasets profiles count them.
type Reference struct {
	Edges  []float64 `json:"edges"`
	Counts []int64   `json:"counts"`
}

// EqualWidth is the reference of a profile histogram: len(counts) bins of
// equal width over [lo, hi].
func EqualWidth(lo, hi float64, counts []int64) Reference {
	n := len(counts)
	edges := make([]float64, n+1)
	for i := range edges {
		edges[i] = lo + (hi-lo)*float64(i)/float64(max(n, 1))
	}
	edges[n] = hi
	return Reference{Edges: edges, Counts: slices.Clone(counts)}
}

// Validate checks the shape of r: at least one bin, finite ascending edges,
// no negative count.
func (r Reference) Validate() error {
	if len(r.Counts) == 0 || len(r.Edges) != len(r.Counts)+1 {
		return fmt.Errorf("reference: %d edges for %d bins (want bins+1)", len(r.Edges), len(r.Counts))
	}
	for i, e := range r.Edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return fmt.Errorf("reference: edge %d is %g", i, e)
		}
		if i > 0 && e < r.Edges[i-1] {
			return fmt.Errorf("reference: edges not ascending at %d (%g after %g)", i, e, r.Edges[i-1])
		}
	}
	for i, c := range r.Counts {
		if c < 0 {
			return fmt.Errorf("reference: bin %d count %d is negative", i, c)
		}
	}
	return nil
}

// Live is a histogram as a runtime exports it (Prometheus buckets made
// non-cumulative): Counts[i] holds values in (Bounds[i-1], Bounds[i]],
// Counts[0] everything at or below Bounds[0] and Counts[len(Bounds)]
// everything above the last bound, so len(Counts) = len(Bounds)+1.
type Live struct {
	Bounds []float64 `json:"bounds"`
	Counts []int64   `json:"counts"`
}

// Validate checks the shape of l: finite strictly ascending bounds and
// non-negative counts, one more count than bounds.
func (l Live) Validate() error {
	if len(l.Counts) != len(l.Bounds)+1 {
		return fmt.Errorf("live histogram: %d counts for %d bounds (want bounds+1)", len(l.Counts), len(l.Bounds))
	}
	for i, b := range l.Bounds {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			return fmt.Errorf("live histogram: bound %d is %g", i, b)
		}
		if i > 0 && b <= l.Bounds[i-1] {
			return fmt.Errorf("live histogram: bounds not ascending at %d (%g after %g)", i, b, l.Bounds[i-1])
		}
	}
	for i, c := range l.Counts {
		if c < 0 {
			return fmt.Errorf("live histogram: bucket %d count %d is negative", i, c)
		}
	}
	return nil
}

// Total is the number of observations of l.
func (l Live) Total() int64 {
	var n int64
	for _, c := range l.Counts {
		n += c
	}
	return n
}

// Add returns l with o's counts added; both must have the same bounds.
func (l Live) Add(o Live) (Live, error) {
	if len(l.Counts) == 0 {
		return Live{Bounds: slices.Clone(o.Bounds), Counts: slices.Clone(o.Counts)}, nil
	}
	if !slices.Equal(l.Bounds, o.Bounds) || len(l.Counts) != len(o.Counts) {
		return l, fmt.Errorf("live histograms with different bounds")
	}
	out := Live{Bounds: l.Bounds, Counts: slices.Clone(l.Counts)}
	for i, c := range o.Counts {
		out.Counts[i] += c
	}
	return out, nil
}

// Rebin spreads the live counts over the reference's bins plus two
// overflow bins: the result has len(ref.Counts)+2 entries, [0] below the
// first edge, [n+1] above the last. A bounded live bucket (a, b] spreads
// its count linearly over the part of [a, b] each bin covers, the parts
// outside the reference's range going to the overflow bins. The unbounded
// buckets cannot be spread: the lowest, (-inf, b], is underflow when b is
// below the first edge and otherwise sits at b (at most the last edge); the
// highest, (b, +inf), is overflow when b is at or above the last edge and
// otherwise sits at b (at least the first edge). So a runtime exporting the
// profile's edges as bounds, plus one just below the first edge, reproduces
// the profile's bins exactly. A zero-width reference bin (a constant
// training column) receives the mass of live buckets that sit on it.
func Rebin(ref Reference, live Live) []float64 {
	n := len(ref.Counts)
	out := make([]float64, n+2)
	if n == 0 {
		return out
	}
	lo, hi := ref.Edges[0], ref.Edges[n]
	for i, c := range live.Counts {
		if c == 0 {
			continue
		}
		m := float64(c)
		switch {
		case i == 0 && len(live.Bounds) == 0: // one bucket, no bounds: nowhere to put it
			out[pointBin(ref, math.NaN())] += m
		case i == 0:
			if b := live.Bounds[0]; b < lo {
				out[0] += m
			} else {
				out[pointBin(ref, math.Min(b, hi))] += m
			}
		case i == len(live.Bounds):
			if b := live.Bounds[i-1]; b >= hi {
				out[n+1] += m
			} else {
				out[pointBin(ref, math.Max(b, lo))] += m
			}
		default:
			spread(ref, live.Bounds[i-1], live.Bounds[i], m, out)
		}
	}
	return out
}

// pointBin is the index in Rebin's output of the bin holding x.
func pointBin(ref Reference, x float64) int {
	n := len(ref.Counts)
	switch {
	case math.IsNaN(x):
		return n + 1
	case x < ref.Edges[0]:
		return 0
	case x > ref.Edges[n]:
		return n + 1
	case x == ref.Edges[n]:
		return n
	}
	// The last edge at or below x: bin [Edges[j], Edges[j+1]).
	j := sort.Search(n+1, func(k int) bool { return ref.Edges[k] > x }) - 1
	return min(j, n-1) + 1
}

// spread adds mass m, uniform over (a, b], to out.
func spread(ref Reference, a, b, m float64, out []float64) {
	n := len(ref.Counts)
	lo, hi := ref.Edges[0], ref.Edges[n]
	w := b - a
	if w <= 0 || math.Nextafter(a, b) == b {
		// One float wide: the bucket holds b alone.
		out[pointBin(ref, b)] += m
		return
	}
	if under := math.Min(b, lo) - a; under > 0 {
		out[0] += m * under / w
	}
	if over := b - math.Max(a, hi); over > 0 {
		out[n+1] += m * over / w
	}
	if b <= lo || a >= hi {
		return
	}
	// Bins overlapping (a, b]: from the one holding a to the one holding b.
	first := max(sort.Search(n+1, func(k int) bool { return ref.Edges[k] > a })-1, 0)
	for j := first; j < n && ref.Edges[j] < b; j++ {
		l, r := ref.Edges[j], ref.Edges[j+1]
		if r <= l {
			continue // zero-width: gets point masses only
		}
		if ov := math.Min(b, r) - math.Max(a, l); ov > 0 {
			out[j+1] += m * ov / w
		}
	}
}

// expected is the reference as Rebin's layout: no mass in the overflow bins.
func expected(ref Reference) []float64 {
	out := make([]float64, len(ref.Counts)+2)
	for i, c := range ref.Counts {
		out[i+1] = float64(c)
	}
	return out
}

// Epsilon is the proportion PSI gives an empty bin, so that a bin empty on
// one side counts as a large but finite shift.
const Epsilon = 1e-4

func proportions(c []float64) ([]float64, bool) {
	var t float64
	for _, v := range c {
		t += v
	}
	if t <= 0 || math.IsNaN(t) || math.IsInf(t, 0) {
		return nil, false
	}
	p := make([]float64, len(c))
	for i, v := range c {
		p[i] = v / t
	}
	return p, true
}

// PSI is the population stability index of live against ref (counts over
// the same bins): Σ (l−r)·ln(l/r) over proportions, empty bins counted as
// Epsilon. Below 0.1 is usually read as stable, above 0.25 as a shift.
// NaN when either side is empty or the lengths differ.
func PSI(ref, live []float64) float64 {
	r, ok1 := proportions(ref)
	l, ok2 := proportions(live)
	if !ok1 || !ok2 || len(r) != len(l) {
		return math.NaN()
	}
	var psi float64
	for i := range r {
		a, b := math.Max(r[i], Epsilon), math.Max(l[i], Epsilon)
		psi += (b - a) * math.Log(b/a)
	}
	return psi
}

// JS is the Jensen–Shannon distance (the square root of the divergence,
// base-2 logarithms) between two count vectors: 0 for the same
// distribution, 1 for disjoint ones. NaN when either side is empty.
func JS(ref, live []float64) float64 {
	p, ok1 := proportions(ref)
	q, ok2 := proportions(live)
	if !ok1 || !ok2 || len(p) != len(q) {
		return math.NaN()
	}
	var d float64
	for i := range p {
		m := (p[i] + q[i]) / 2
		if p[i] > 0 {
			d += p[i] / 2 * math.Log2(p[i]/m)
		}
		if q[i] > 0 {
			d += q[i] / 2 * math.Log2(q[i]/m)
		}
	}
	return math.Sqrt(math.Max(d, 0))
}

// KS is the binned Kolmogorov–Smirnov statistic: the largest difference
// between the two cumulative distributions at a bin boundary. NaN when
// either side is empty.
func KS(ref, live []float64) float64 {
	p, ok1 := proportions(ref)
	q, ok2 := proportions(live)
	if !ok1 || !ok2 || len(p) != len(q) {
		return math.NaN()
	}
	var cp, cq, ks float64
	for i := range p {
		cp += p[i]
		cq += q[i]
		ks = math.Max(ks, math.Abs(cp-cq))
	}
	return ks
}

// Stats are the drift statistics of one feature.
type Stats struct {
	PSI float64 `json:"psi"`
	JS  float64 `json:"js"`
	KS  float64 `json:"ks"`
	// Samples is the number of live observations compared.
	Samples int64 `json:"samples"`
}

// Compare rebins live onto ref and computes every statistic.
func Compare(ref Reference, live Live) Stats {
	r, l := expected(ref), Rebin(ref, live)
	return Stats{PSI: PSI(r, l), JS: JS(r, l), KS: KS(r, l), Samples: live.Total()}
}

// CompareCategories compares category counts (a categorical feature) over
// the union of both sides' categories, in sorted order.
func CompareCategories(ref, live map[string]int64) Stats {
	keys := make([]string, 0, len(ref)+len(live))
	for k := range ref {
		keys = append(keys, k)
	}
	for k := range live {
		if _, ok := ref[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	r := make([]float64, len(keys))
	l := make([]float64, len(keys))
	var n int64
	for i, k := range keys {
		r[i] = float64(max(ref[k], 0))
		l[i] = float64(max(live[k], 0))
		n += max(live[k], 0)
	}
	return Stats{PSI: PSI(r, l), JS: JS(r, l), KS: KS(r, l), Samples: n}
}

// Bounds are the bucket bounds a runtime exports for ref: the edges,
// preceded by the float just below the first one, so that Rebin puts
// values below the range into underflow and values on the first edge into
// the first bin. Repeated edges (zero-width bins) appear once.
func Bounds(ref Reference) []float64 {
	if len(ref.Edges) == 0 {
		return nil
	}
	out := []float64{math.Nextafter(ref.Edges[0], math.Inf(-1))}
	for _, e := range ref.Edges {
		if e > out[len(out)-1] {
			out = append(out, e)
		}
	}
	return out
}

// Sub returns the counts of l observed since prev (same bounds); ok is
// false when the bounds differ or a count went down (the runtime
// restarted), in which case l itself is the best delta.
func (l Live) Sub(prev Live) (d Live, ok bool) {
	if !slices.Equal(l.Bounds, prev.Bounds) || len(l.Counts) != len(prev.Counts) {
		return l, false
	}
	d = Live{Bounds: l.Bounds, Counts: make([]int64, len(l.Counts))}
	for i, c := range l.Counts {
		if c < prev.Counts[i] {
			return l, false
		}
		d.Counts[i] = c - prev.Counts[i]
	}
	return d, true
}
