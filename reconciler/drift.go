package reconciler

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

// ProfileReader reads the profile stored with a dataset version in the
// named dataset store (the server's "default" store unless the Dataset
// names another).
type ProfileReader func(ctx context.Context, store, digest string) (*datasets.Profile, error)

// profileRetry is how long a failed profile read waits before the next try.
const profileRetry = time.Minute

// profileEntry is a dataset's profile as drift references, or why not.
type profileEntry struct {
	refs map[string]drift.Reference
	cats map[string]map[string]int64 // categorical columns: value counts
	err  error
	at   time.Time
}

// driftKey names one live (release, target).
type driftKey struct{ release, target string }

// driftState is the sliding window of input counts of one (release, target)
// for the model it runs, and where its monitor stands.
type driftState struct {
	digest  string
	last    time.Time // End of the newest window taken
	windows []takenWindow
	changed bool
	dataset string
	report  drift.Report
	metrics map[string]float64
	// above is since when the monitored metric exceeds its max; alarmed
	// whether DriftDetected was raised for this episode (and since when).
	above   time.Time
	alarmed time.Time
}

// takenWindow is a reported input window and when this server took it.
type takenWindow struct {
	taken time.Time
	fleet.InputWindow
}

// driftConfig is a release's drift window and minimum samples.
func driftConfig(rel manifests.Release) (time.Duration, int64, *manifests.DriftMonitor) {
	window, minSamples := manifests.DefaultDriftWindow, int64(manifests.DefaultDriftMinSamples)
	var mon *manifests.DriftMonitor
	if m := rel.Spec.Monitor; m != nil && m.Drift != nil {
		mon = m.Drift
		if mon.Window.Duration > 0 {
			window = mon.Window.Duration
		}
		if mon.MinSamples > 0 {
			minSamples = mon.MinSamples
		}
	}
	return window, minSamples, mon
}

// loadProfiles reads the training profiles of every admitted release that
// are not cached yet (failed reads are retried after profileRetry). It runs
// before the rollout steps, which only read the cache.
func (r *Reconciler) loadProfiles(ctx context.Context, now time.Time) {
	for k := range r.drift {
		if rs := r.releases[k.release]; rs == nil || rs.admitted() == nil {
			delete(r.drift, k)
		}
	}
	if r.opts.Profiles == nil {
		return
	}
	for _, dss := range r.trainedOn {
		for _, ds := range dss {
			d := ds.Spec.Digest
			if e, ok := r.profiles[d]; ok && (e.err == nil || now.Sub(e.at) < profileRetry) {
				continue
			}
			store := ds.Spec.Store
			if store == "" {
				store = "default"
			}
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			p, err := r.opts.Profiles(pctx, store, d)
			cancel()
			e := &profileEntry{err: err, at: now}
			if err == nil {
				e.refs, e.cats = p.References(), p.CategoryCounts()
				for name, ref := range e.refs {
					if verr := ref.Validate(); verr != nil {
						delete(e.refs, name)
					}
				}
			} else {
				r.log.Debug("no training profile for drift", "dataset", ds.Metadata.Name, "digest", d, "err", err)
			}
			r.profiles[d] = e
		}
	}
}

// rememberTraining keeps the training datasets of a's model digest.
func (r *Reconciler) rememberTraining(a *Admitted) {
	if d := digest.OfRef(a.Model.Spec.Artifact).String(); d != "" && len(a.Datasets) > 0 {
		r.trainedOn[d] = a.Datasets
	}
}

// reference is the first training dataset with a profile of the model
// digest (as admitted at some commit; unknown after a restart for models
// no stored release names any more: then no drift is computed).
func (r *Reconciler) reference(digest string) (string, *profileEntry) {
	for _, ds := range r.trainedOn[digest] {
		if e := r.profiles[ds.Spec.Digest]; e != nil && e.err == nil && len(e.refs)+len(e.cats) > 0 {
			return ds.Spec.Digest, e
		}
	}
	return "", nil
}

// observeDrift takes the input window target reported for release (status
// rs), slides the window, and returns the drift metrics (nil: no data) and
// the events the release's monitor raises. abort is true when the monitor
// asks for a rollback.
func (r *Reconciler) observeDrift(a *Admitted, target string, rs fleet.ReleaseStatus, now time.Time) (metrics map[string]float64, events []fleet.Event, abort bool) {
	name := a.Release.Metadata.Name
	key := driftKey{name, target}
	dataset, ref := r.reference(rs.Digest)
	if ref == nil || rs.Digest == "" {
		delete(r.drift, key)
		return nil, nil, false
	}
	window, minSamples, mon := driftConfig(a.Release)
	ds := r.drift[key]
	if ds == nil || ds.digest != rs.Digest || ds.dataset != dataset {
		// A new model (or reference) starts a new window.
		ds = &driftState{digest: rs.Digest, dataset: dataset, changed: true}
		r.drift[key] = ds
	}
	if w := rs.Inputs; w != nil && w.End.After(ds.last) {
		ds.windows = append(ds.windows, takenWindow{taken: now, InputWindow: *w})
		ds.last = w.End
		ds.changed = true
	}
	// Windows slide by the server's clock (agents' clocks may be off): a
	// window ended when it was taken, at the latest.
	keep := ds.windows[:0]
	for _, w := range ds.windows {
		if now.Sub(w.taken) <= window {
			keep = append(keep, w)
		} else {
			ds.changed = true
		}
	}
	ds.windows = keep
	if ds.changed {
		ds.report = compareWindows(ref, ds.windows, minSamples)
		ds.metrics = ds.report.Metrics()
		ds.changed = false
	}
	if mon != nil && mon.Max != nil && mon.Metric != "" {
		v, ok := ds.metrics[mon.Metric]
		switch {
		case ok && v > *mon.Max:
			if ds.above.IsZero() {
				ds.above = now
			}
			if ds.alarmed.IsZero() && now.Sub(ds.above) >= mon.For.Duration {
				ds.alarmed = now
				msg := fmt.Sprintf("%s %.3f > %g on %s for %s (model %s, trained on %s): worst features %s",
					mon.Metric, v, *mon.Max, target, now.Sub(ds.above).Round(time.Second), manifests.ShortDigest(rs.Digest),
					manifests.ShortDigest(dataset), ds.report.Worst(baseMetric(mon.Metric), 3))
				events = append(events, fleet.Event{Time: now, Type: manifests.EventDriftDetected, Reason: manifests.EventDriftDetected,
					Release: name, Target: target, Commit: a.Commit, Message: msg, Targets: []string{target}})
				abort = mon.Action == manifests.DriftActionRollback
				facts := lineage.DriftFacts{Release: name, Target: target, ModelDigest: rs.Digest, Dataset: dataset,
					Metric: mon.Metric, Value: round3(v), Max: *mon.Max, Samples: ds.metricSamples(), Features: map[string]float64{}, Time: now}
				for i, f := range ds.report.Features {
					if i == 3 {
						break
					}
					facts.Features[f.Name] = round3(f.PSI)
				}
				r.driftFacts = append(r.driftFacts, facts)
			}
		case ok:
			ds.above, ds.alarmed = time.Time{}, time.Time{}
		}
	}
	return ds.metrics, events, abort
}

func (ds *driftState) metricSamples() int64 {
	s, _ := ds.report.Max()
	return s.Samples
}

// driftRecorder is the optional extra of a lineage.Recorder that records
// drift (lineage.Graph has it).
type driftRecorder interface {
	RecordDrift(ctx context.Context, f lineage.DriftFacts) error
}

// recordDrift appends the drift the monitors raised this pass to lineage.
func (r *Reconciler) recordDrift(ctx context.Context) {
	facts := r.driftFacts
	r.driftFacts = nil
	dr, ok := r.opts.Lineage.(driftRecorder)
	if !ok {
		return
	}
	for _, f := range facts {
		if err := dr.RecordDrift(ctx, f); err != nil {
			r.log.Warn("record drift in lineage", "release", f.Release, "target", f.Target, "err", err)
		}
	}
}

// baseMetric is drift_psi for drift_psi:rms.
func baseMetric(m string) string {
	for i := range len(m) {
		if m[i] == ':' {
			return m[:i]
		}
	}
	return m
}

// compareWindows sums the windows per feature and compares each feature
// with its reference: numeric ones with the column's histogram, categorical
// ones with its value counts. Features the profile lacks are not compared.
func compareWindows(ref *profileEntry, windows []takenWindow, minSamples int64) drift.Report {
	sums := map[string]drift.Live{}
	cats := map[string]map[string]int64{}
	for _, w := range windows {
		for name, h := range w.Features {
			if _, ok := ref.cats[name]; ok && len(h.Categories) > 0 {
				if cats[name] == nil {
					cats[name] = map[string]int64{}
				}
				for k, n := range h.Categories {
					cats[name][k] += n
				}
				continue
			}
			if _, ok := ref.refs[name]; !ok || len(h.Counts) == 0 {
				continue
			}
			l := drift.Live{Bounds: h.Bounds, Counts: h.Counts}
			s, err := sums[name].Add(l)
			if err != nil {
				s = drift.Live{Bounds: slices.Clone(l.Bounds), Counts: slices.Clone(l.Counts)} // the runtime changed its bins: start over
			}
			sums[name] = s
		}
	}
	var fs []drift.Feature
	for name, l := range sums {
		fs = append(fs, drift.Feature{Name: name, Stats: drift.Compare(ref.refs[name], l)})
	}
	for name, c := range cats {
		fs = append(fs, drift.Feature{Name: name, Stats: drift.CompareCategories(ref.cats[name], c)})
	}
	return drift.Summarize(fs, minSamples)
}

// driftInfo is what the status API shows of a release's drift.
func (r *Reconciler) driftInfo(release string, targets []string, window time.Duration) []fleet.TargetDrift {
	var out []fleet.TargetDrift
	for _, t := range targets {
		ds := r.drift[driftKey{release, t}]
		if ds == nil || len(ds.windows) == 0 {
			continue
		}
		td := fleet.TargetDrift{Target: t, Model: ds.digest, Dataset: ds.dataset, Window: window}
		if s, ok := ds.report.Max(); ok {
			td.Conclusive = true
			td.Samples, td.PSI, td.JS, td.KS = s.Samples, round3(s.PSI), round3(s.JS), round3(s.KS)
		}
		for _, f := range append(slices.Clone(ds.report.Features), ds.report.Inconclusive...) {
			td.Features = append(td.Features, fleet.FeatureDrift{Name: f.Name, PSI: round3(f.PSI), JS: round3(f.JS), KS: round3(f.KS), Samples: f.Samples})
			if !td.Conclusive {
				td.Samples = max(td.Samples, f.Samples)
			}
		}
		if !ds.alarmed.IsZero() {
			at := ds.alarmed
			td.Alarm = &at
		}
		out = append(out, td)
	}
	return out
}

// round3 keeps three decimals, so that the stored status changes only
// when a value does visibly (NaN becomes 0).
func round3(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return math.Round(v*1000) / 1000
}
