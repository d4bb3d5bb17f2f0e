package history

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Point is one step of a series: the mean, least and greatest value
// reported in [Time, Time+step).
type Point struct {
	Time time.Time `json:"t"`
	Avg  float64   `json:"avg"`
	Min  float64   `json:"min"`
	Max  float64   `json:"max"`
	N    int64     `json:"n"`
}

// Metrics is a target's history over a range, as GET
// /api/v1/targets/{name}/metrics returns it.
type Metrics struct {
	Target string    `json:"target"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	// Step is the width of each point; Resolution that of the stored points
	// it was computed from (60 or 3600 seconds).
	Step       Seconds            `json:"step"`
	Resolution Seconds            `json:"resolution"`
	Series     map[string][]Point `json:"series"`
}

// Seconds is a duration that encodes as a number of seconds.
type Seconds float64

// Duration returns s as a time.Duration.
func (s Seconds) Duration() time.Duration { return time.Duration(float64(s) * float64(time.Second)) }

// Points returns target's series from..to in steps of step (0: a step that
// gives about 120 points). It reads 1-minute points when the range lies
// within the last 48 hours and step is under an hour, else 1-hour points.
func (h *History) Points(ctx context.Context, target string, from, to time.Time, step time.Duration) (*Metrics, error) {
	if !to.After(from) {
		return nil, fmt.Errorf("metrics of %s: from %s is not before to %s", target, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if step <= 0 {
		step = max(to.Sub(from)/120, time.Minute).Truncate(time.Minute)
	}
	res := int64(60)
	if step >= time.Hour || from.Before(h.now().Add(-KeepMinutes)) {
		res = 3600
	}
	step = max(step, time.Duration(res)*time.Second).Truncate(time.Second)
	if to.Sub(from)/step > 10000 {
		return nil, fmt.Errorf("metrics of %s: %s in steps of %s is more than 10000 points", target, to.Sub(from), step)
	}
	if err := h.Flush(ctx); err != nil {
		return nil, err
	}
	cols := []string{"bucket"}
	for _, s := range Series {
		cols = append(cols, s+"_n", s+"_sum", s+"_min", s+"_max")
	}
	// Buckets that began before to: to's whole seconds, plus the second it
	// is in (a range ending at 12:01:00.5 holds the 12:01 bucket's start).
	until := to.Unix()
	if to.Nanosecond() > 0 {
		until++
	}
	rows, err := h.db.QueryContext(ctx, h.db.Rebind(`SELECT `+strings.Join(cols, ", ")+` FROM metric_points WHERE target = ? AND res = ? AND bucket >= ? AND bucket < ? ORDER BY bucket`),
		target, res, from.Unix()/res*res, until)
	if err != nil {
		return nil, fmt.Errorf("read metrics of %s: %w", target, err)
	}
	defer rows.Close()
	stepS := int64(step / time.Second)
	var buckets []int64
	byStep := map[int64]*agg{}
	dest := make([]any, 1+4*nSeries)
	var bucket int64
	var a agg
	dest[0] = &bucket
	for i := range nSeries {
		dest[1+4*i], dest[2+4*i], dest[3+4*i], dest[4+4*i] = &a.n[i], &a.sum[i], &a.min[i], &a.max[i]
	}
	base := from.Unix()
	for rows.Next() {
		a = agg{}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read metrics of %s: %w", target, err)
		}
		k := base + (bucket-base)/stepS*stepS
		if bucket < base {
			k = base
		}
		cur := byStep[k]
		if cur == nil {
			cur = &agg{}
			byStep[k] = cur
			buckets = append(buckets, k)
		}
		cur.merge(&a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read metrics of %s: %w", target, err)
	}
	m := &Metrics{Target: target, From: from.UTC(), To: to.UTC(), Step: Seconds(step.Seconds()), Resolution: Seconds(res), Series: map[string][]Point{}}
	for i, name := range Series {
		pts := []Point{}
		for _, k := range buckets {
			c := byStep[k]
			if c.n[i] == 0 {
				continue
			}
			pts = append(pts, Point{Time: time.Unix(k, 0).UTC(), Avg: c.sum[i] / float64(c.n[i]), Min: c.min[i], Max: c.max[i], N: c.n[i]})
		}
		m.Series[name] = pts
	}
	return m, nil
}

// Uptime is one target's (or the fleet's) availability over a window.
type Uptime struct {
	Target string `json:"target,omitempty"`
	// Online says whether the target reported within offlineAfter of now.
	Online bool `json:"online"`
	// Observed is the part of the window after the target was first seen;
	// OnlineFor the part of it with reports at most offlineAfter apart.
	Observed  Seconds `json:"observedSeconds"`
	OnlineFor Seconds `json:"onlineSeconds"`
	// Percent is 100·OnlineFor/Observed (0 when never observed).
	Percent float64 `json:"percent"`
	// Outages counts online→offline transitions within the window.
	Outages     int          `json:"outages"`
	Transitions []Transition `json:"transitions,omitempty"`
}

// Transition is a change of connectivity: online at a session's first
// report, offline offlineAfter after its last.
type Transition struct {
	Time   time.Time `json:"time"`
	Online bool      `json:"online"`
}

// UptimeReport is GET /api/v1/uptime: the fleet's and each target's uptime.
type UptimeReport struct {
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Fleet   Uptime    `json:"fleet"`
	Targets []Uptime  `json:"targets"`
}

// Uptime computes availability over [to-window, to] for target ("" for
// every target and the fleet), with each target's transitions when
// transitions is set.
func (h *History) Uptime(ctx context.Context, target string, window time.Duration, to time.Time, transitions bool) (*UptimeReport, error) {
	if window <= 0 {
		return nil, fmt.Errorf("uptime: window %s is not positive", window)
	}
	if err := h.Flush(ctx); err != nil {
		return nil, err
	}
	from := to.Add(-window)
	first, err := h.firstSeen(ctx, target)
	if err != nil {
		return nil, err
	}
	by, err := h.onlineIn(ctx, target, from, to, transitions)
	if err != nil {
		return nil, err
	}
	rep := &UptimeReport{From: from.UTC(), To: to.UTC(), Targets: []Uptime{}}
	for t, f := range first {
		u := by[t]
		if u == nil {
			u = &Uptime{Target: t}
		}
		begin := time.Unix(0, f)
		if begin.Before(from) {
			begin = from
		}
		if to.After(begin) {
			u.Observed = Seconds(to.Sub(begin).Seconds())
		}
		if u.OnlineFor > u.Observed {
			u.OnlineFor = u.Observed
		}
		u.Percent = percent(u.OnlineFor, u.Observed)
		rep.Targets = append(rep.Targets, *u)
		rep.Fleet.Observed += u.Observed
		rep.Fleet.OnlineFor += u.OnlineFor
		rep.Fleet.Outages += u.Outages
	}
	sort.Slice(rep.Targets, func(i, j int) bool { return rep.Targets[i].Target < rep.Targets[j].Target })
	rep.Fleet.Percent = percent(rep.Fleet.OnlineFor, rep.Fleet.Observed)
	return rep, nil
}

// firstSeen is when each target (target alone, unless "") was first
// sighted: where its observation begins.
func (h *History) firstSeen(ctx context.Context, target string) (map[string]int64, error) {
	first := map[string]int64{}
	fq := `SELECT target, MIN(start_at) FROM presence`
	var fargs []any
	if target != "" {
		fq += ` WHERE target = ?`
		fargs = append(fargs, target)
	}
	frows, err := h.db.QueryContext(ctx, h.db.Rebind(fq+` GROUP BY target`), fargs...)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	defer frows.Close()
	for frows.Next() {
		var t string
		var s int64
		if err := frows.Scan(&t, &s); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		first[t] = s
	}
	if err := frows.Err(); err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	return first, nil
}

// onlineIn sums, per target, the time online within [from, to] and the
// outages that began in it, from the presence sessions overlapping it;
// with transitions, each session's start and end in the window too.
func (h *History) onlineIn(ctx context.Context, target string, from, to time.Time, transitions bool) (map[string]*Uptime, error) {
	q := `SELECT target, start_at, last_at FROM presence WHERE last_at >= ? AND start_at <= ?`
	args := []any{from.Add(-h.offlineAfter).UnixNano(), to.UnixNano()}
	if target != "" {
		q += ` AND target = ?`
		args = append(args, target)
	}
	rows, err := h.db.QueryContext(ctx, h.db.Rebind(q+` ORDER BY target, start_at`), args...)
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	defer rows.Close()
	now := h.now()
	by := map[string]*Uptime{}
	for rows.Next() {
		var t string
		var s, l int64
		if err := rows.Scan(&t, &s, &l); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		u := by[t]
		if u == nil {
			u = &Uptime{Target: t}
			by[t] = u
		}
		start, last := time.Unix(0, s), time.Unix(0, l)
		end := last
		if now.Sub(last) <= h.offlineAfter {
			// Still online: up to now.
			end, u.Online = now, true
		}
		if start.After(from) && !start.After(to) && transitions {
			u.Transitions = append(u.Transitions, Transition{Time: start.UTC(), Online: true})
		}
		if off := last.Add(h.offlineAfter); end.Equal(last) && off.After(from) && !off.After(to) {
			u.Outages++
			if transitions {
				u.Transitions = append(u.Transitions, Transition{Time: off.UTC(), Online: false})
			}
		}
		u.OnlineFor += Seconds(overlap(start, end, from, to).Seconds())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	return by, nil
}

func overlap(a0, a1, b0, b1 time.Time) time.Duration {
	lo, hi := a0, a1
	if b0.After(lo) {
		lo = b0
	}
	if b1.Before(hi) {
		hi = b1
	}
	if hi.After(lo) {
		return hi.Sub(lo)
	}
	return 0
}

func percent(part, whole Seconds) float64 {
	if whole <= 0 {
		return 0
	}
	return math.Round(10000*float64(part)/float64(whole)) / 100
}
