package dashboard

import (
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/history"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// esc escapes text for SVG.
func esc(s string) string { return template.HTMLEscapeString(s) }

// sparkSVG draws points (mean as a line, min–max as a band) over [from, to].
func sparkSVG(pts []history.Point, from, to time.Time) template.HTML {
	const w, h = 240.0, 40.0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		lo, hi = math.Min(lo, p.Min), math.Max(hi, p.Max)
	}
	if hi == lo {
		hi, lo = hi+1, lo-1
	}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 { return w * t.Sub(from).Seconds() / span }
	y := func(v float64) float64 { return h - 2 - (h-4)*(v-lo)/(hi-lo) }
	var line, band, bandBack strings.Builder
	for i, p := range pts {
		sep := " "
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&line, "%s%.1f,%.1f", sep, x(p.Time), y(p.Avg))
		fmt.Fprintf(&band, "%s%.1f,%.1f", sep, x(p.Time), y(p.Max))
	}
	for i := len(pts) - 1; i >= 0; i-- {
		fmt.Fprintf(&bandBack, " %.1f,%.1f", x(pts[i].Time), y(pts[i].Min))
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="history"><polygon class="band" points="%s%s"/><polyline class="line" points="%s"/></svg>`,
		w, h, w, h, band.String(), bandBack.String(), line.String()))
}

// stateSegs are the states of a bar, left to right, with their CSS class.
func stateSegs(s stateCounts) []struct {
	class string
	n     int
} {
	return []struct {
		class string
		n     int
	}{{"healthy", s.Healthy}, {"installing", s.Installing}, {"downloading", s.Downloading}, {"pending", s.Pending}, {"failed", s.Failed}, {"waiting", s.Waiting}}
}

// barRects draws counts as adjoining rects from x over width w.
func barRects(b *strings.Builder, s stateCounts, x, y, w, h float64) {
	total := s.total()
	if total == 0 {
		fmt.Fprintf(b, `<rect class="waiting" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`, x, y, w, h)
		return
	}
	for _, sg := range stateSegs(s) {
		if sg.n == 0 {
			continue
		}
		sw := w * float64(sg.n) / float64(total)
		fmt.Fprintf(b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%d %s</title></rect>`, sg.class, x, y, sw, h, sg.n, sg.class)
		x += sw
	}
}

func countsLabel(s stateCounts) string {
	return fmt.Sprintf("%d healthy, %d installing, %d downloading, %d pending, %d failed, %d waiting", s.Healthy, s.Installing, s.Downloading, s.Pending, s.Failed, s.Waiting)
}

// totalBarSVG draws all of a release's targets as one bar by state, with
// each wave's cumulative percent marked and the current wave named.
func totalBarSVG(s waveStates) template.HTML {
	const w, h = 600.0, 28.0
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="wavebar" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, w, h+14, w, h+14, esc(countsLabel(s.stateCounts)))
	barRects(&b, s.stateCounts, 0, 4, w, 20)
	for _, wv := range s.Waves {
		px := w * float64(wv.Percent) / 100
		cls := "mark"
		if wv.Current {
			cls = "mark current"
		}
		fmt.Fprintf(&b, `<line class="%s" x1="%.1f" x2="%.1f" y1="0" y2="28"/><text class="%s" x="%.1f" y="40" text-anchor="end">wave %d · %d%%</text>`, cls, px, px, cls, math.Max(px-2, 40), wv.Number, wv.Percent)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// wavesSVG draws one bar per wave, each as wide as the wave's share of
// the targets is of the largest wave, its targets by state.
func wavesSVG(s waveStates) template.HTML {
	const labelW, barW, rowH, countW = 150.0, 420.0, 30.0, 130.0
	largest := 1
	for _, wv := range s.Waves {
		largest = max(largest, wv.Targets)
	}
	var b strings.Builder
	for _, wv := range s.Waves {
		fmt.Fprintf(&b, `<svg class="wavebar" id="wave-%d" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`,
			wv.Number, labelW+barW+countW, rowH, labelW+barW+countW, rowH, esc(fmt.Sprintf("wave %d (%d%%, %d targets): %s", wv.Number, wv.Percent, wv.Targets, countsLabel(wv.stateCounts))))
		cls := "wavelabel"
		switch {
		case wv.Current:
			cls += " current"
		case !wv.Started:
			cls += " later"
		}
		fmt.Fprintf(&b, `<text class="%s" x="0" y="19">wave %d · %d%%</text>`, cls, wv.Number, wv.Percent)
		bw := barW * float64(max(wv.Targets, 1)) / float64(largest)
		barRects(&b, wv.stateCounts, labelW, 5, bw, 20)
		fmt.Fprintf(&b, `<text class="wavecount" x="%.1f" y="19">%d/%d healthy</text>`, labelW+barW+8, wv.Healthy, wv.Targets)
		b.WriteString(`</svg>`)
	}
	return template.HTML(b.String())
}

// lineageSVG lays a subgraph out in columns by depth from its root.
func lineageSVG(sg *lineage.Subgraph) template.HTML {
	if sg == nil || len(sg.Nodes) == 0 {
		return ""
	}
	const colW, rowH, boxW, boxH = 230.0, 46.0, 200.0, 32.0
	cols := map[int][]lineage.NodeInfo{}
	maxDepth := 0
	for _, n := range sg.Nodes {
		cols[n.Depth] = append(cols[n.Depth], n)
		maxDepth = max(maxDepth, n.Depth)
	}
	pos := map[string][2]float64{}
	maxRows := 0
	for dpt := 0; dpt <= maxDepth; dpt++ {
		ns := cols[dpt]
		sort.Slice(ns, func(i, j int) bool { return ns[i].ID < ns[j].ID })
		for i, n := range ns {
			pos[n.ID] = [2]float64{10 + float64(dpt)*colW, 10 + float64(i)*rowH}
		}
		maxRows = max(maxRows, len(ns))
	}
	w, h := 20+float64(maxDepth+1)*colW, 20+float64(maxRows)*rowH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="lineage" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="lineage of %s">`, w, h, w, h, esc(sg.Root))
	for _, l := range sg.Links {
		p, q := pos[l.From], pos[l.To]
		if p == ([2]float64{}) || q == ([2]float64{}) {
			continue
		}
		// Edges run between the facing sides of the boxes.
		x1, x2 := p[0]+boxW, q[0]
		if p[0] > q[0] {
			x1, x2 = p[0], q[0]+boxW
		}
		cls := "edge"
		if l.Outcome != "" {
			cls += " " + esc(strings.ToLower(l.Outcome))
		}
		fmt.Fprintf(&b, `<line class="%s" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"><title>%s</title></line>`, cls, x1, p[1]+boxH/2, x2, q[1]+boxH/2, esc(l.Type+" "+l.Outcome))
	}
	for _, n := range sg.Nodes {
		p := pos[n.ID]
		typ, id, _ := lineage.SplitNode(n.ID)
		if typ == "" {
			typ = n.Type
		}
		short := id
		if strings.HasPrefix(short, "sha256:") {
			short = short[:19]
		}
		if len(short) > 26 {
			short = short[:26] + "…"
		}
		fmt.Fprintf(&b, `<a href="/lineage?node=%s"><g class="node %s"><rect x="%.1f" y="%.1f" width="%.0f" height="%.0f" rx="4"/><text x="%.1f" y="%.1f">%s</text><text class="type" x="%.1f" y="%.1f">%s</text></g><title>%s</title></a>`,
			esc(urlQuery(n.ID)), esc(typ), p[0], p[1], boxW, boxH, p[0]+8, p[1]+14, esc(short), p[0]+8, p[1]+27, esc(typ), esc(n.ID))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func urlQuery(s string) string { return url.QueryEscape(s) }

func bytesIEC(v float64) string { return output.Bytes(int64(v)) }

func formatMetric(name string, v float64) string {
	switch name {
	case "cpu":
		return strconv.FormatFloat(v, 'f', 1, 64) + "%"
	case "memory", "disk_free":
		return bytesIEC(v)
	case "temperature":
		return strconv.FormatFloat(v, 'f', 1, 64) + " °C"
	case "uptime":
		return (time.Duration(v) * time.Second).Round(time.Minute).String()
	case "latency":
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}
