package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
)

// driftRow is one (release, target) of `cairn get drift`.
type driftRow struct {
	Release string `json:"release"`
	fleet.TargetDrift
}

type driftList []driftRow

// driftRows flattens the releases' drift, keeping release and target when set.
func driftRows(rs []fleet.ReleaseInfo, release, target string) driftList {
	out := driftList{}
	for _, r := range rs {
		if release != "" && r.Name != release {
			continue
		}
		for _, d := range r.Drift {
			if target != "" && d.Target != target {
				continue
			}
			out = append(out, driftRow{Release: r.Name, TargetDrift: d})
		}
	}
	return out
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

// worst names the features with the highest PSI, as the server sorted them.
func worst(d fleet.TargetDrift, n int) string {
	var parts []string
	for i, f := range d.Features {
		if i == n {
			break
		}
		parts = append(parts, f.Name+"="+num(f.PSI))
	}
	return dash(strings.Join(parts, ","))
}

func (l driftList) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(l))
	for _, d := range l {
		psi, js, ks, w := num(d.PSI), num(d.JS), num(d.KS), worst(d.TargetDrift, 3)
		if !d.Conclusive {
			psi, js, ks, w = "-", "-", "-", "(fewer samples than minSamples)"
		}
		alarm := "-"
		if d.Alarm != nil {
			alarm = "DriftDetected " + age(*d.Alarm) + " ago"
		}
		rows = append(rows, []string{d.Release, d.Target, shortDigest(d.Model), shortDigest(d.Dataset), d.Window.String(),
			strconv.FormatInt(d.Samples, 10), psi, js, ks, w, alarm})
	}
	return []string{"RELEASE", "TARGET", "MODEL", "DATASET", "WINDOW", "SAMPLES", "PSI", "JS", "KS", "WORST (PSI)", "ALARM"}, rows
}

// describeDrift prints the drift section of `cairn describe target`.
func describeDrift(w io.Writer, rows driftList) {
	fmt.Fprintln(w, "Drift:")
	if len(rows) == 0 {
		fmt.Fprintln(w, "  (no input statistics)")
	}
	for _, d := range rows {
		state := "inconclusive (fewer samples than minSamples)"
		if d.Conclusive {
			state = fmt.Sprintf("drift_psi=%s drift_js=%s drift_ks=%s", num(d.PSI), num(d.JS), num(d.KS))
		}
		if d.Alarm != nil {
			state += " DriftDetected since " + d.Alarm.Local().Format("15:04:05")
		}
		fmt.Fprintf(w, "  %s: model %s vs dataset %s over %s, %d samples: %s\n", d.Release, shortDigest(d.Model), shortDigest(d.Dataset), d.Window, d.Samples, state)
		for _, f := range d.Features {
			fmt.Fprintf(w, "    %-16s psi=%s js=%s ks=%s samples=%d\n", f.Name, num(f.PSI), num(f.JS), num(f.KS), f.Samples)
		}
	}
}
