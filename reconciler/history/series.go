package history

import (
	"math/bits"
	"slices"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
)

// Series are the names of the kept metrics, in storage order.
var Series = []string{"cpu", "memory", "temperature", "disk_free", "uptime", "error_rate", "latency", "drift"}

// nSeries is len(Series).
const nSeries = 8

// sample is one report's values; ok says which series it carried.
type sample struct {
	v  [nSeries]float64
	ok [nSeries]bool
}

// sampleOf reads a report's series: cpu_percent, memory_bytes,
// temperature_c, disk_free_bytes (else the facts' diskFree), uptime_s,
// error_rate, latency_p95_ms, and drift as the largest metric named drift*.
func sampleOf(rep fleet.StatusReport) sample {
	var s sample
	set := func(i int, v float64) { s.v[i], s.ok[i] = v, true }
	keys := [...]string{0: "cpu_percent", 1: "memory_bytes", 2: "temperature_c", 3: "disk_free_bytes", 4: "uptime_s", 5: "error_rate", 6: "latency_p95_ms"}
	for i, k := range keys {
		if v, ok := rep.Metrics[k]; ok && finite(v) {
			set(i, v)
		}
	}
	if !s.ok[3] && rep.Facts != nil && rep.Facts.DiskFree > 0 {
		set(3, float64(rep.Facts.DiskFree))
	}
	for k, v := range rep.Metrics {
		if strings.HasPrefix(k, "drift") && finite(v) && (!s.ok[7] || v > s.v[7]) {
			set(7, v)
		}
	}
	return s
}

func finite(v float64) bool { return v == v && v < 1e300 && v > -1e300 }

// agg aggregates the samples of one bucket.
type agg struct {
	n             [nSeries]int64
	sum, min, max [nSeries]float64
	since         int64 // unix seconds of its first sample since it was last written
}

func (a *agg) add(s sample) {
	for i := range nSeries {
		if !s.ok[i] {
			continue
		}
		a.addValue(i, 1, s.v[i], s.v[i], s.v[i])
	}
}

func (a *agg) addValue(i int, n int64, sum, lo, hi float64) {
	if n == 0 {
		return
	}
	if a.n[i] == 0 || lo < a.min[i] {
		a.min[i] = lo
	}
	if a.n[i] == 0 || hi > a.max[i] {
		a.max[i] = hi
	}
	a.n[i] += n
	a.sum[i] += sum
}

func (a *agg) merge(b *agg) {
	for i := range nSeries {
		a.addValue(i, b.n[i], b.sum[i], b.min[i], b.max[i])
	}
}

// held is a minute point while Observe gathers it: the aggregates of only
// the series its samples carried, in series order (a report carries four or
// five of the eight): 176 bytes a target for four, where an agg takes 288.
type held struct {
	since int64 // as agg's
	have  uint8 // bit i: series i is in vals
	vals  []stat
}

type stat struct {
	n           int64
	sum, lo, hi float64
}

func (h *held) add(s sample) {
	if h.vals == nil {
		n := 0
		for _, ok := range s.ok {
			if ok {
				n++
			}
		}
		h.vals = make([]stat, 0, n)
	}
	for i := range nSeries {
		if s.ok[i] {
			h.addValue(i, 1, s.v[i], s.v[i], s.v[i])
		}
	}
}

func (h *held) addValue(i int, n int64, sum, lo, hi float64) {
	if n == 0 {
		return
	}
	bit := uint8(1) << i
	k := bits.OnesCount8(h.have & (bit - 1))
	if h.have&bit == 0 {
		h.vals = slices.Insert(h.vals, k, stat{})
		h.have |= bit
	}
	st := &h.vals[k]
	if st.n == 0 || lo < st.lo {
		st.lo = lo
	}
	if st.n == 0 || hi > st.hi {
		st.hi = hi
	}
	st.n += n
	st.sum += sum
}

// merge adds what o gathered.
func (h *held) merge(o *held) {
	k := 0
	for i := range nSeries {
		if o.have&(1<<i) != 0 {
			st := o.vals[k]
			k++
			h.addValue(i, st.n, st.sum, st.lo, st.hi)
		}
	}
}

// agg is h as an agg, the form the point is written in.
func (h *held) agg() agg {
	a := agg{since: h.since}
	k := 0
	for i := range nSeries {
		if h.have&(1<<i) != 0 {
			st := h.vals[k]
			k++
			a.n[i], a.sum[i], a.min[i], a.max[i] = st.n, st.sum, st.lo, st.hi
		}
	}
	return a
}
