package plan

import (
	"fmt"
	"io"
	"strings"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// Limits that keep a markdown plan under the 65,536 characters of a GitHub
// comment for large fleets; the JSON plan is always complete.
const (
	mdMaxChars       = 60000 // the whole comment, with room for a CI header
	mdMaxNamesInWave = 50    // target names listed per wave
	mdMaxUnfit       = 20    // unfit rows per release
	mdMaxTableRows   = 100   // rows of the summary table
)

// WriteMarkdown renders the plan for a pull-request comment: a summary line,
// a table of releases, then a section per changed, denied or warned release
// with its waves and their gates (target lists collapsed), unfit targets
// and verdicts.
func (p *Plan) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	p.writeHeader(&b)
	p.writeReleaseTable(&b)
	writePolicyTable(&b, p.Releases)
	order := p.sectionOrder()
	for i, r := range order {
		var sec strings.Builder
		r.writeSection(&sec)
		if b.Len()+sec.Len() > mdMaxChars {
			fmt.Fprintf(&b, "_%d more releases are not shown here: see `cairn plan -o json`._\n", len(order)-i)
			break
		}
		b.WriteString(sec.String())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeHeader writes the title, the verdict with the totals, where the plan
// comes from and its notes.
func (p *Plan) writeHeader(b *strings.Builder) {
	s := p.Summary
	status := "✅ **allowed**"
	if p.Denied {
		status = fmt.Sprintf("❌ **denied** (%d of %d releases)", s.Denied, s.Releases)
	} else if s.Held > 0 {
		status = fmt.Sprintf("⏸️ **held** (%d of %d releases: an artifact is missing)", s.Held, s.Releases)
	} else if s.Warned > 0 {
		status = fmt.Sprintf("⚠️ **allowed with warnings** (%s)", plural(s.Warned, "release"))
	}
	fmt.Fprintf(b, "## cairn plan\n\n%s · %s · %s · %s · %s\n\n",
		status, plural(s.Releases, "release"), changes(s), plural(s.Assignments, "target assignment"), downloadText(s.Bytes, s.WholeBytes, ""))
	var src []string
	if p.Base != "" {
		src = append(src, "base "+p.Base)
	} else {
		src = append(src, "no base")
	}
	if p.Live {
		src = append(src, "live fleet")
	}
	src = append(src, plural(p.Targets, "target")+" in the inventory")
	if s.Unfit > 0 {
		src = append(src, fmt.Sprintf("%d unfit", s.Unfit))
	}
	fmt.Fprintf(b, "<sub>%s</sub>\n\n", strings.Join(src, " · "))
	for _, n := range p.Notes {
		fmt.Fprintf(b, "> ⚠️ %s\n\n", n)
	}
}

// writeReleaseTable writes one row per release, at most mdMaxTableRows.
func (p *Plan) writeReleaseTable(b *strings.Builder) {
	if len(p.Releases) == 0 {
		return
	}
	b.WriteString("| | release | model | change | targets | unfit | download |\n| --- | --- | --- | --- | ---: | ---: | ---: |\n")
	for i, r := range p.Releases {
		if i == mdMaxTableRows {
			fmt.Fprintf(b, "| | … %d more releases in `-o json` | | | | | |\n", len(p.Releases)-i)
			break
		}
		dl := bytesText(r.Bytes, r.WholeBytes)
		if r.Change == Removed || r.assigned() == 0 {
			dl = "–"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %d | %d | %s |\n", icon(r), r.Name, modelText(r), changeText(r), r.assigned(), len(r.Unfit), dl)
	}
	b.WriteString("\n")
}

// sectionOrder lists the releases that get a section: denied and held ones
// first, then warned, then other changes.
func (p *Plan) sectionOrder() []*Release {
	var order []*Release
	for pass := 0; pass < 3; pass++ {
		for i := range p.Releases {
			r := &p.Releases[i]
			switch {
			case r.Denied, r.Held != "":
				if pass == 0 {
					order = append(order, r)
				}
			case r.warned():
				if pass == 1 {
					order = append(order, r)
				}
			case r.Change != Unchanged || len(r.Unfit) > 0 || r.rolloutActive():
				if pass == 2 {
					order = append(order, r)
				}
			}
		}
	}
	return order
}

// rolloutActive reports whether the live rollout needs a reviewer's eye:
// progressing, paused, aborted or rolled back.
func (r *Release) rolloutActive() bool {
	return r.Rollout != nil && r.Rollout.Phase != "" && r.Rollout.Phase != "Succeeded"
}

// writeSection writes the section of one release.
func (r *Release) writeSection(b *strings.Builder) {
	fmt.Fprintf(b, "### %s %s · %s\n\n", icon(*r), r.Name, r.Change)
	if r.Change == Removed {
		if r.Kept {
			fmt.Fprintf(b, "Removed with `prune: false`: targets keep running `%s` %s, no longer managed.\n\n", r.Model, digestText(r.From))
			return
		}
		fmt.Fprintf(b, "Removed: targets stop running `%s` %s.\n\n", r.Model, digestText(r.From))
		return
	}
	r.writeFacts(b)
	r.writeState(b)
	r.writeWaves(b)
	r.writeUnfit(b)
	if len(r.Verdicts) > 0 {
		b.WriteString("| policy | result | message |\n| --- | --- | --- |\n")
		for _, v := range r.Verdicts {
			fmt.Fprintf(b, "| %s | %s | %s |\n", v.Policy, resultText(v.Result), cell(v.Message))
		}
		b.WriteString("\n")
	}
}

// writeFacts writes the model line and the release's facts: policy,
// profiles, target counts, download.
func (r *Release) writeFacts(b *strings.Builder) {
	fmt.Fprintf(b, "Model `%s`", r.Model)
	if r.Version != "" {
		fmt.Fprintf(b, " %s", r.Version)
	}
	if r.From != "" && r.From != r.To {
		fmt.Fprintf(b, ": %s → %s", digestText(r.From), digestText(r.To))
	} else {
		fmt.Fprintf(b, ": %s", digestText(r.To))
	}
	b.WriteString("  \n")
	var facts []string
	if r.RolloutPolicy != "" {
		facts = append(facts, fmt.Sprintf("rollout policy `%s`", r.RolloutPolicy))
	}
	if len(r.Profiles) > 0 {
		facts = append(facts, "profiles `"+strings.Join(r.Profiles, "`, `")+"`")
	}
	facts = append(facts, fmt.Sprintf("%d selected, %d fit, %d unfit, %d up to date", r.Selected, r.assigned(), len(r.Unfit), r.UpToDate))
	model := ""
	if r.ModelBytes != nil {
		model = "model " + output.BytesSI(*r.ModelBytes)
	}
	facts = append(facts, downloadText(r.Bytes, r.WholeBytes, model))
	if r.Suspended {
		facts = append(facts, "**suspended**")
	}
	b.WriteString(strings.Join(facts, " · ") + "\n\n")
}

// writeState writes the live rollout, why admission holds or waits, and
// the release's notes.
func (r *Release) writeState(b *strings.Builder) {
	if lr := r.Rollout; lr != nil && lr.Phase != "" {
		fmt.Fprintf(b, "Live rollout: **%s** of %s", lr.Phase, digestText(lr.Digest))
		if lr.LastGood != "" && lr.LastGood != lr.Digest {
			fmt.Fprintf(b, " · last good %s", digestText(lr.LastGood))
		}
		if lr.Message != "" {
			fmt.Fprintf(b, " · %s", lr.Message)
		}
		b.WriteString("\n\n")
	}
	if r.Held != "" {
		fmt.Fprintf(b, "> ⏸️ **held**: %s\n\n", r.Held)
	}
	if r.Unavailable != "" {
		fmt.Fprintf(b, "> ⏳ **unavailable**: %s (admission retries)\n\n", r.Unavailable)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "> ⚠️ %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
}

// writeWaves writes the waves with the gates that hold each, and the
// targets of each wave collapsed.
func (r *Release) writeWaves(b *strings.Builder) {
	if r.assigned() == 0 {
		return
	}
	b.WriteString("| wave | percent | bake | targets | download | gates |\n| ---: | ---: | --- | ---: | ---: | --- |\n")
	for i, w := range r.Waves {
		bake := w.Bake
		if bake == "" {
			bake = "–"
		}
		fmt.Fprintf(b, "| %d | %d%% | %s | %d | %s | %s |\n", i+1, w.Percent, bake, len(w.Targets), bytesText(w.Bytes, w.WholeBytes), gatesText(w.Gates))
	}
	fmt.Fprintf(b, "\n<details><summary>Targets by wave (%d)</summary>\n\n", r.assigned())
	for i, w := range r.Waves {
		fmt.Fprintf(b, "- wave %d: %s\n", i+1, names(w.Targets, mdMaxNamesInWave))
	}
	b.WriteString("\n</details>\n\n")
}

// gatesText is a wave's gates in a table cell: for each the metric, the
// aggregate within its threshold, minSamples and onNoData.
func gatesText(gates []manifests.Gate) string {
	if len(gates) == 0 {
		return "–"
	}
	var out []string
	for _, g := range gates {
		var th []string
		if g.Min != nil {
			th = append(th, fmt.Sprintf("≥ %g", *g.Min))
		}
		if g.Max != nil {
			th = append(th, fmt.Sprintf("≤ %g", *g.Max))
		}
		out = append(out, fmt.Sprintf("`%s` %s %s, ≥ %s, no data: %s", cell(g.Metric), g.Aggregate, strings.Join(th, " and "),
			plural(g.MinSamples, "sample"), g.OnNoData))
	}
	return strings.Join(out, "<br>")
}

// writeUnfit writes the targets that cannot take the model and why.
func (r *Release) writeUnfit(b *strings.Builder) {
	if len(r.Unfit) == 0 {
		return
	}
	fmt.Fprintf(b, "**Cannot take the model (%d)**\n\n", len(r.Unfit))
	rows := r.Unfit
	open := len(rows) > 5
	if open {
		fmt.Fprintf(b, "<details><summary>Unfit targets</summary>\n\n")
	}
	b.WriteString("| target | reason |\n| --- | --- |\n")
	for i, u := range rows {
		if i == mdMaxUnfit {
			fmt.Fprintf(b, "| … %d more | |\n", len(rows)-i)
			break
		}
		fmt.Fprintf(b, "| `%s` | %s |\n", u.Target, cell(u.Reason))
	}
	if open {
		b.WriteString("\n</details>\n")
	}
	b.WriteString("\n")
}

// writePolicyTable counts, per policy, the releases it allowed, warned and
// denied: the verdict table of the whole plan.
func writePolicyTable(b *strings.Builder, releases []Release) {
	type counts struct{ allow, warn, deny int }
	var order []string
	per := map[string]*counts{}
	for _, r := range releases {
		worst := map[string]string{}
		for _, v := range r.Verdicts {
			if _, ok := per[v.Policy]; !ok {
				per[v.Policy] = &counts{}
				order = append(order, v.Policy)
			}
			if rank(v.Result) > rank(worst[v.Policy]) {
				worst[v.Policy] = v.Result
			}
		}
		for pol, res := range worst {
			c := per[pol]
			switch res {
			case policies.Deny:
				c.deny++
			case policies.Warn:
				c.warn++
			default:
				c.allow++
			}
		}
	}
	if len(order) == 0 {
		return
	}
	b.WriteString("| policy | ✅ allow | ⚠️ warn | ❌ deny |\n| --- | ---: | ---: | ---: |\n")
	for _, pol := range order {
		c := per[pol]
		fmt.Fprintf(b, "| %s | %d | %d | %d |\n", pol, c.allow, c.warn, c.deny)
	}
	b.WriteString("\n")
}

func rank(result string) int {
	switch result {
	case policies.Deny:
		return 3
	case policies.Warn:
		return 2
	case policies.Allow:
		return 1
	}
	return 0
}

func (r *Release) assigned() int {
	n := 0
	for _, w := range r.Waves {
		n += len(w.Targets)
	}
	return n
}

func (r *Release) warned() bool {
	for _, v := range r.Verdicts {
		if v.Result == policies.Warn {
			return true
		}
	}
	return false
}

func icon(r Release) string {
	switch {
	case r.Denied:
		return "❌"
	case r.Held != "":
		return "⏸️"
	case r.warned():
		return "⚠️"
	case r.Change == Removed:
		return "➖"
	}
	return "✅"
}

func resultText(res string) string {
	switch res {
	case policies.Deny:
		return "❌ deny"
	case policies.Warn:
		return "⚠️ warn"
	}
	return "✅ allow"
}

func modelText(r Release) string {
	if r.Version != "" {
		return fmt.Sprintf("`%s` %s", r.Model, r.Version)
	}
	return fmt.Sprintf("`%s`", r.Model)
}

func changeText(r Release) string {
	switch r.Change {
	case Changed:
		return digestText(r.From) + " → " + digestText(r.To)
	case Removed:
		return "removed"
	case Added:
		return "added " + digestText(r.To)
	}
	return "unchanged " + digestText(r.To)
}

func changes(s Summary) string {
	var c []string
	for _, x := range []struct {
		n    int
		what string
	}{{s.Added, "added"}, {s.Changed, "changed"}, {s.Removed, "removed"}, {s.Unchanged, "unchanged"}} {
		if x.n > 0 {
			c = append(c, fmt.Sprintf("%d %s", x.n, x.what))
		}
	}
	if len(c) == 0 {
		return "no changes"
	}
	return strings.Join(c, ", ")
}

// digestText shortens a digest for reading: `sha256:0123456789ab`.
func digestText(d string) string {
	if d == "" {
		return "–"
	}
	return "`" + digest.Digest(d).Short() + "`"
}

// downloadText is "X to download", with what whole layers would be when
// delta updates make it less, and extra, in parentheses.
func downloadText(n, whole *int64, extra string) string {
	if n == nil {
		if extra != "" {
			return "download size unknown (" + extra + ")"
		}
		return "download size unknown"
	}
	var paren []string
	if whole != nil && *whole != *n {
		paren = append(paren, output.BytesSI(*whole)+" in whole layers")
	}
	if extra != "" {
		paren = append(paren, extra)
	}
	s := output.BytesSI(*n) + " to download"
	if len(paren) > 0 {
		s += " (" + strings.Join(paren, ", ") + ")"
	}
	return s
}

// bytesText is a download in a table cell: "X", or "X (Y whole)" when delta
// updates make it less than whole layers.
func bytesText(n, whole *int64) string {
	if n == nil {
		return "size unknown"
	}
	if whole != nil && *whole != *n {
		return output.BytesSI(*n) + " (" + output.BytesSI(*whole) + " whole)"
	}
	return output.BytesSI(*n)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func names(list []string, max int) string {
	if len(list) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, n := range list {
		if i == max {
			fmt.Fprintf(&b, " … and %d more", len(list)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("`" + n + "`")
	}
	return b.String()
}

// cell escapes text for a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
