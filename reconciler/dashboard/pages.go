package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// fleetRow is one line of the fleet list.
type fleetRow struct {
	*row
	Online   bool
	Attn     string // failed, offline, updating, never, ok
	InSync   bool
	Releases []relDigest
}

type relDigest struct {
	Release, Desired, Running string
	InSync                    bool
}

var rankNames = [nRanks]string{"failed", "offline", "updating", "never", "ok"}

func (d *Dashboard) fleetPage(w http.ResponseWriter, r *http.Request, role string) {
	q := r.URL.Query()
	f := Filter{Text: q.Get("q"), Label: q.Get("label"), Profile: q.Get("profile"), Phase: q.Get("phase")}
	pageNo, _ := strconv.Atoi(q.Get("page"))
	pageNo = max(pageNo, 1)
	size := d.cfg.PageSize
	now := d.now()
	rows, matching, counts := d.cache.page(f, (pageNo-1)*size, size, now, d.cfg.OfflineAfter)
	out := make([]fleetRow, len(rows))
	for i, rw := range rows {
		fr := fleetRow{row: rw, Online: !rw.LastSeen.IsZero() && now.Sub(rw.LastSeen) <= d.cfg.OfflineAfter, InSync: rw.inSync(),
			Attn: rankNames[rw.rank(now, d.cfg.OfflineAfter)]}
		names := map[string]bool{}
		for k := range rw.Desired {
			names[k] = true
		}
		for k := range rw.Running {
			names[k] = true
		}
		for n := range names {
			fr.Releases = append(fr.Releases, relDigest{Release: n, Desired: rw.Desired[n], Running: rw.Running[n],
				InSync: rw.Desired[n] == "" || (rw.Desired[n] == rw.Running[n] && rw.Phases[n] == fleet.PhaseHealthy)})
		}
		sort.Slice(fr.Releases, func(a, b int) bool { return fr.Releases[a].Release < fr.Releases[b].Release })
		out[i] = fr
	}
	pages := max((matching+size-1)/size, 1)
	link := func(p int) string {
		v := url.Values{}
		for k, x := range map[string]string{"q": f.Text, "label": f.Label, "profile": f.Profile, "phase": f.Phase} {
			if x != "" {
				v.Set(k, x)
			}
		}
		if p > 1 {
			v.Set("page", strconv.Itoa(p))
		}
		if len(v) == 0 {
			return "/"
		}
		return "/?" + v.Encode()
	}
	data := map[string]any{"Role": role, "Title": "Fleet", "Live": true, "Rows": out, "Counts": counts, "Matching": matching,
		"Filter": f, "Profiles": d.cache.profileNames(), "PageNo": pageNo, "Pages": pages,
		"Phases": []string{"online", "offline", "updating", "failed", "never", fleet.PhaseHealthy, fleet.PhaseDownloading, fleet.PhaseInstalling, fleet.PhasePending}}
	if pageNo > 1 {
		data["Prev"] = link(pageNo - 1)
	}
	if pageNo < pages {
		data["Next"] = link(pageNo + 1)
	}
	d.render(w, r, http.StatusOK, "fleet", data)
}

// sparkline is one metric's recent history as drawn on the target page.
type sparkline struct {
	Name, Last string
	SVG        any
}

func (d *Dashboard) targetPage(w http.ResponseWriter, r *http.Request, role string) {
	id := r.PathValue("id")
	ctx := r.Context()
	t, err := d.cfg.Store.Target(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		d.fail(w, r, http.StatusNotFound, "Target %s is not enrolled.", id)
		return
	}
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read target %s: %v", id, err)
		return
	}
	now := d.now()
	ti := fleetstate.TargetInfo(t, now, d.cfg.OfflineAfter)
	if ds, err := d.cfg.Store.Desired(ctx, id); err == nil {
		var st fleet.DesiredState
		if jsonUnmarshal(ds.Body, &st) == nil {
			ti.Desired = st.Models
		}
	}
	logs, err := d.cfg.Store.Log(ctx, id, 100)
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read the deployment log of %s: %v", id, err)
		return
	}
	evs, err := d.cfg.Store.Events(ctx, fleet.EventFilter{Target: id, Limit: 50})
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read the events of %s: %v", id, err)
		return
	}
	// The store's filter matches events naming the target; newest first here.
	reverse(logs)
	reverse(evs)
	data := map[string]any{"Role": role, "Title": t.Name, "Live": true, "T": ti, "Log": logs, "Events": evs}
	data["Conditions"] = d.targetConditions(id, ti, now, data)
	d.targetHistory(ctx, id, now, data)
	d.render(w, r, http.StatusOK, "target", data)
}

// targetConditions are a target's Online, Ready and InSync conditions; its
// profiles go into data.
func (d *Dashboard) targetConditions(id string, ti fleet.TargetInfo, now time.Time, data map[string]any) []fleet.Condition {
	var conds []fleet.Condition
	online := fleet.Condition{Type: "Online", Status: "False", Reason: "NeverReported", Message: "no status report yet"}
	if ti.LastSeen != nil {
		online = fleet.Condition{Type: "Online", Status: "True", Reason: "Reporting", Message: "last report " + ago(now, *ti.LastSeen) + " ago", LastTransitionTime: *ti.LastSeen}
		if !ti.Online {
			online.Status, online.Reason = "False", "Silent"
		}
	}
	conds = append(conds, online)
	ready := fleet.Condition{Type: "Ready", Status: "True", Reason: "Healthy", Message: "every release is healthy"}
	for _, rs := range ti.Releases {
		if rs.Phase != fleet.PhaseHealthy {
			ready = fleet.Condition{Type: "Ready", Status: "False", Reason: rs.Phase, Message: rs.Release + ": " + rs.Message}
			break
		}
	}
	if len(ti.Releases) == 0 {
		ready = fleet.Condition{Type: "Ready", Status: "Unknown", Reason: "NoReleases", Message: "the target reports no release"}
	}
	conds = append(conds, ready)
	if rw := d.cache.get(id); rw != nil {
		sync := fleet.Condition{Type: "InSync", Status: "True", Reason: "RunsDesired", Message: "runs every digest it is told to"}
		if !rw.inSync() {
			sync = fleet.Condition{Type: "InSync", Status: "False", Reason: "Updating", Message: "runs other digests than it is told to"}
		}
		conds = append(conds, sync)
		data["Profiles"] = rw.Profiles
	}
	return conds
}

// targetHistory puts a target's sparklines, uptime and active models into
// data, when the dashboard has history and lineage.
func (d *Dashboard) targetHistory(ctx context.Context, id string, now time.Time, data map[string]any) {
	if d.cfg.History != nil {
		m, err := d.cfg.History.Points(ctx, id, now.Add(-6*time.Hour), now, 5*time.Minute)
		if err == nil {
			var sparks []sparkline
			for _, name := range history.Series {
				pts := m.Series[name]
				if len(pts) == 0 {
					continue
				}
				sparks = append(sparks, sparkline{Name: name, Last: formatMetric(name, pts[len(pts)-1].Avg), SVG: sparkSVG(pts, m.From, m.To)})
			}
			data["Sparks"] = sparks
		}
		if u, err := d.cfg.History.Uptime(ctx, id, 30*24*time.Hour, now, true); err == nil && len(u.Targets) == 1 {
			data["Uptime"] = u.Targets[0]
		}
	}
	if d.cfg.Lineage != nil {
		if act, err := d.cfg.Lineage.At(ctx, id, now); err == nil {
			data["Active"] = act
		}
	}
}

// releaseView is one release as the release pages show it.
type releaseView struct {
	fleet.ReleaseInfo
	Spec     *admitted
	States   waveStates
	Bar      any // all targets in one bar
	WaveBars any // one bar per wave
	Bake     string
	Gates    []gateView
	After    string
}

// gateView is a gate over the current wave's bake: the aggregate of the
// samples so far against its threshold, and the latest worst value.
type gateView struct {
	Metric, Aggregate, Bound, Value, Samples, Latest, Outcome string
	Class                                                     string // Outcome as a CSS class
}

func (d *Dashboard) releaseView(ctx context.Context, rel store.Release, now time.Time) releaseView {
	ri := releaseInfo(rel)
	rec, ok := d.cache.record(rel.Name)
	if !ok || !rec.UpdatedAt.Equal(rel.UpdatedAt) {
		rec = record.Decode(record.Columns{Name: rel.Name, Commit: rel.Commit, Spec: rel.Spec, State: rel.State, Status: rel.Status}, rel.UpdatedAt)
	}
	v := releaseView{ReleaseInfo: ri, Spec: rec.Admitted}
	var gates []manifests.Gate
	var waves []manifests.Wave
	if v.Spec != nil {
		gates, waves = v.Spec.Policy.Spec.Gates, v.Spec.Policy.Spec.Waves
	}
	v.States = d.cache.releaseStates(rec, ri.Digest, ri.Wave)
	v.Bar, v.WaveBars = totalBarSVG(v.States), wavesSVG(v.States)
	st := rec.Rollout
	if !st.BakeStarted.IsZero() && st.Wave < len(waves) {
		end := st.BakeStarted.Add(waves[st.Wave].Bake.Duration)
		if left := end.Sub(now); left > 0 {
			v.Bake = "wave " + strconv.Itoa(st.Wave+1) + " bakes until " + end.Local().Format("15:04:05") + " (" + left.Round(time.Second).String() + " left)"
		} else {
			v.Bake = "wave " + strconv.Itoa(st.Wave+1) + " baked " + waves[st.Wave].Bake.Duration.String()
		}
	}
	v.Gates = gateViews(gates, st.Gates, st.Wave, v.States.Worst)
	if v.Spec != nil && v.Spec.Release.Spec.After != nil {
		a := v.Spec.Release.Spec.After
		need := a.HealthyFor.Duration
		v.After = "waits for " + a.Release + " healthy for " + need.String() + ": "
		up, err := d.cfg.Store.Release(ctx, a.Release)
		switch {
		case err != nil:
			v.After += a.Release + " is not admitted"
		default:
			ui := releaseInfo(up)
			switch {
			case ui.HealthySince == nil:
				v.After += "not healthy yet — held"
			case now.Sub(*ui.HealthySince) >= need:
				v.After += "healthy since " + ui.HealthySince.Local().Format("15:04:05") + " — open"
			default:
				v.After += "healthy for " + now.Sub(*ui.HealthySince).Round(time.Second).String() + " — held"
			}
		}
	}
	return v
}

// gateViews shows each gate's outcome over the current wave's bake window
// (the rollout engine's own evaluation), or "waiting" before the bake.
func gateViews(gates []manifests.Gate, win *rollout.GateWindow, wave int, worst map[string]float64) []gateView {
	var out []gateView
	for _, g := range gates {
		gv := gateView{Metric: g.Metric, Aggregate: g.Aggregate, Value: "–", Samples: "0", Latest: "no report", Outcome: "waiting"}
		if gv.Aggregate == "" {
			gv.Aggregate = manifests.AggregateMean
		}
		switch {
		case g.Max != nil:
			gv.Bound = "≤ " + strconv.FormatFloat(*g.Max, 'g', -1, 64)
		case g.Min != nil:
			gv.Bound = "≥ " + strconv.FormatFloat(*g.Min, 'g', -1, 64)
		}
		if ms := g.MinSamples; ms > 1 {
			gv.Bound += " · ≥ " + strconv.Itoa(ms) + " samples"
		}
		if val, ok := worst[g.Metric]; ok {
			gv.Latest = strconv.FormatFloat(val, 'g', 4, 64)
		}
		if win != nil && win.Wave == wave {
			res := rollout.Evaluate(g, win.Stats[g.Metric])
			gv.Outcome, gv.Samples = res.Outcome, strconv.Itoa(res.Samples)
			if res.Outcome == rollout.GatePass || res.Outcome == rollout.GateFail {
				gv.Value = strconv.FormatFloat(res.Value, 'g', 4, 64)
			}
		}
		gv.Class = strings.ReplaceAll(gv.Outcome, " ", "-")
		out = append(out, gv)
	}
	return out
}

func (d *Dashboard) releasesPage(w http.ResponseWriter, r *http.Request, role string) {
	rels, err := d.cfg.Store.Releases(r.Context())
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read releases: %v", err)
		return
	}
	now := d.now()
	var vs []releaseView
	for _, rel := range rels {
		vs = append(vs, d.releaseView(r.Context(), rel, now))
	}
	d.render(w, r, http.StatusOK, "releases", map[string]any{"Role": role, "Title": "Releases", "Live": true, "Releases": vs})
}

func (d *Dashboard) releasePage(w http.ResponseWriter, r *http.Request, role string) {
	name := r.PathValue("name")
	rel, err := d.cfg.Store.Release(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		d.fail(w, r, http.StatusNotFound, "Release %s is not admitted.", name)
		return
	}
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read release %s: %v", name, err)
		return
	}
	evs, _ := d.cfg.Store.Events(r.Context(), fleet.EventFilter{Release: name, Limit: 30})
	reverse(evs)
	d.render(w, r, http.StatusOK, "release", map[string]any{"Role": role, "Title": name, "Live": true, "R": d.releaseView(r.Context(), rel, d.now()), "Events": evs,
		"Actions": []string{"pause", "resume", "abort", "retry"}, "Done": r.URL.Query().Get("done")})
}

var actionText = map[string]string{
	"pause":  "Pause the rollout: no new targets start updating until it is resumed.",
	"resume": "Resume the paused rollout.",
	"abort":  "Abort the rollout: targets told to run the new digest go back to the last good one.",
	"retry":  "Retry the rollout after a failure or an abort.",
}

func (d *Dashboard) confirmPage(w http.ResponseWriter, r *http.Request, role string) {
	name, action := r.PathValue("name"), r.URL.Query().Get("action")
	if role != roleAdmin {
		d.fail(w, r, http.StatusForbidden, "Rollout actions need a session opened with the admin token.")
		return
	}
	if actionText[action] == "" {
		d.fail(w, r, http.StatusBadRequest, "Unknown action %q: want pause, resume, abort or retry.", action)
		return
	}
	d.render(w, r, http.StatusOK, "confirm", map[string]any{"Role": role, "Title": action + " " + name, "Release": name, "Action": action, "Text": actionText[action]})
}

func (d *Dashboard) action(w http.ResponseWriter, r *http.Request, role string) {
	name := r.PathValue("name")
	if !sameOrigin(r) {
		http.Error(w, "cross-site request refused", http.StatusForbidden)
		return
	}
	if role != roleAdmin {
		d.fail(w, r, http.StatusForbidden, "Rollout actions need a session opened with the admin token.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	action := r.PostForm.Get("action")
	if actionText[action] == "" || r.PostForm.Get("confirm") != "yes" {
		d.fail(w, r, http.StatusBadRequest, "Unknown or unconfirmed action %q.", action)
		return
	}
	ctx := r.Context()
	if _, err := d.cfg.Store.Release(ctx, name); err != nil {
		d.fail(w, r, http.StatusNotFound, "Release %s is not admitted.", name)
		return
	}
	if err := d.cfg.Store.PushCommand(ctx, name, action); err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Queue %s of %s: %v", action, name, err)
		return
	}
	d.cfg.Store.AddEvents(ctx, []fleet.Event{{Type: "RolloutCommand", Reason: action, Release: name, Message: "operator asked to " + action + " the rollout (dashboard)"}})
	d.log.Info("rollout command queued from the dashboard", "release", name, "action", action)
	if d.cfg.OnCommand != nil {
		d.cfg.OnCommand(name)
	}
	http.Redirect(w, r, "/releases/"+url.PathEscape(name)+"?done="+url.QueryEscape(action), http.StatusSeeOther)
}

func (d *Dashboard) eventsPage(w http.ResponseWriter, r *http.Request, role string) {
	q := r.URL.Query()
	f := fleet.EventFilter{Release: q.Get("release"), Target: q.Get("target"), Type: q.Get("type"), Limit: 200}
	evs, err := d.cfg.Store.Events(r.Context(), f)
	if err != nil {
		d.fail(w, r, http.StatusInternalServerError, "Read events: %v", err)
		return
	}
	reverse(evs)
	d.render(w, r, http.StatusOK, "events", map[string]any{"Role": role, "Title": "Events", "Live": true, "Events": evs, "F": f,
		"Types": []string{"RolloutStarted", "WaveStarted", "RolloutSucceeded", "RolledBack", "RolloutPaused", "RolloutCommand", "TargetOffline", "PolicyDenied"}})
}

func (d *Dashboard) lineagePage(w http.ResponseWriter, r *http.Request, role string) {
	q := r.URL.Query()
	node := strings.TrimSpace(q.Get("node"))
	at := strings.TrimSpace(q.Get("at"))
	data := map[string]any{"Role": role, "Title": "Lineage", "Node": node, "At": at}
	if d.cfg.Lineage == nil {
		data["Error"] = "This server keeps no lineage."
		d.render(w, r, http.StatusOK, "lineage", data)
		return
	}
	ctx := r.Context()
	if node != "" {
		up, err := d.cfg.Lineage.Upstream(ctx, node, 6)
		if err != nil {
			data["Error"] = err.Error()
		} else {
			data["Graph"] = lineageSVG(up)
			data["Up"] = up
		}
		if down, err := d.cfg.Lineage.Downstream(ctx, node, 6); err == nil && len(down.Links) > 0 {
			data["DownGraph"] = lineageSVG(down)
		}
	}
	target := strings.TrimPrefix(node, lineage.Node("target", ""))
	if node != "" && (lineage.NodeType(node) == "target" || !strings.Contains(node, ":")) {
		t := d.now()
		if at != "" {
			p, err := time.ParseInLocation("2006-01-02T15:04", at, time.Local)
			if err != nil {
				p, err = time.Parse(time.RFC3339, at)
			}
			if err != nil {
				data["Error"] = "time " + at + ": want YYYY-MM-DDTHH:MM"
			}
			t = p
		}
		if act, err := d.cfg.Lineage.At(ctx, target, t); err == nil {
			data["Active"], data["AtTime"] = act, t
		}
	}
	d.render(w, r, http.StatusOK, "lineage", data)
}

func reverse[T any](s []T) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// releaseInfo decodes the status the reconciler stored for a release.
func releaseInfo(rel store.Release) fleet.ReleaseInfo {
	rec := record.Decode(record.Columns{Name: rel.Name, Commit: rel.Commit, Spec: rel.Spec, State: rel.State, Status: rel.Status}, rel.UpdatedAt)
	return rec.Status
}
