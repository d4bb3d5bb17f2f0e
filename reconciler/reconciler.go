package reconciler

import (
	"context"
	"encoding/json"
	"maps"

	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/server"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Options configure a Reconciler. Store and Publish are required.
type Options struct {
	Store store.Store
	// Publish hands freshly written desired states to the fleet API.
	Publish func([]store.Desired)
	Metrics *server.Metrics
	Logger  *slog.Logger
	// Source is the followed repository (for the status API); optional.
	Source *source.Source
	// Lineage records admissions; optional.
	Lineage lineage.Recorder
	// Notify receives every recorded event (Alert webhooks); optional.
	Notify func(alerts []manifests.Alert, evs []fleet.Event)
	// Interval is the longest time between passes (5s); MinGap the shortest
	// between passes triggered by status reports (1s).
	Interval, MinGap time.Duration
	// OfflineAfter is how long without contact makes a target offline (3m).
	OfflineAfter time.Duration
	// PlainHTTP reports whether an artifact's registry speaks plain HTTP
	// (the built-in registry on loopback); agents are told so.
	PlainHTTP func(artifact string) bool
	// Profiles reads training profiles, the reference of drift; optional
	// (without it no drift is computed).
	Profiles ProfileReader
	// LeaseRenew is how often the leader lease is taken or renewed (3s):
	// a third of the store's lease TTL or less.
	LeaseRenew time.Duration
}

type cachedTarget struct {
	target   fleet.Target
	sel      map[string]string
	lastSeen time.Time
	status   *fleet.StatusReport
}

// Reconciler admits commits and drives every target to its desired state.
type Reconciler struct {
	opts    Options
	log     *slog.Logger
	trigger chan struct{}

	mu        sync.Mutex
	commit    string // admitted
	fetched   string
	pending   *source.Revision // fetched while not leader
	last      *source.Revision // last commit admitted, re-evaluated while a release is denied
	readmit   time.Time        // when last was last re-evaluated
	alerts    []manifests.Alert
	source    *Status
	admitted  map[string]*Admitted // nil value: denied, never admitted
	denied    map[string]string
	states    map[string]rollout.State
	relStatus map[string]*Status
	assign    map[string]map[string]rollout.Assignment // release → target → model
	saved     map[string]string                        // release → last stored record
	targets   map[string]*cachedTarget
	order     []string
	synced    time.Time
	written   map[string]string // target → etag stored
	online    map[string]bool
	requeue   time.Duration
	lastPass  time.Duration
	profiles  map[string]*profileEntry // dataset digest → drift references
	drift     map[driftKey]*driftState // sliding windows, this leader's since it leads
	// trainedOn maps each model digest admitted since start to its
	// training datasets: a target rolled back to an earlier model is
	// compared with that model's data.
	trainedOn map[string][]manifests.Dataset
	// driftFacts are the drift alarms of this pass, for lineage.
	driftFacts []lineage.DriftFacts

	leaseMu    sync.Mutex
	lease      store.Lease // the last lease campaign got
	loadedTerm int64       // term under which the state was last loaded; 0: following

	rollouts atomic.Pointer[map[string]string] // release → rollout id, read without mu
}

// New returns a reconciler; call Load, then Run.
func New(opts Options) *Reconciler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = server.NewMetrics()
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.MinGap <= 0 {
		opts.MinGap = time.Second
	}
	if opts.OfflineAfter <= 0 {
		opts.OfflineAfter = 3 * time.Minute
	}
	if opts.Publish == nil {
		opts.Publish = func([]store.Desired) {}
	}
	if opts.LeaseRenew <= 0 {
		opts.LeaseRenew = 3 * time.Second
	}
	return &Reconciler{opts: opts, log: opts.Logger, trigger: make(chan struct{}, 1), source: &Status{},
		admitted: map[string]*Admitted{}, denied: map[string]string{}, states: map[string]rollout.State{},
		relStatus: map[string]*Status{}, assign: map[string]map[string]rollout.Assignment{}, saved: map[string]string{},
		targets: map[string]*cachedTarget{}, written: map[string]string{}, online: map[string]bool{},
		profiles: map[string]*profileEntry{}, drift: map[driftKey]*driftState{}, trainedOn: map[string][]manifests.Dataset{}}
}

// Load restores the admitted releases, rollout states and written desired
// states from the store, so a restart carries on where it stopped.
func (r *Reconciler) Load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	rels, err := r.opts.Store.Releases(ctx)
	if err != nil {
		return err
	}
	clear(r.admitted)
	clear(r.denied)
	clear(r.states)
	clear(r.relStatus)
	clear(r.saved)
	clear(r.written)
	if b, err := r.opts.Store.Meta(ctx, "alerts"); err == nil {
		json.Unmarshal(b, &r.alerts)
	}
	for _, rel := range rels {
		var a Admitted
		if len(rel.Spec) > 0 && json.Unmarshal(rel.Spec, &a) == nil && a.Release.Metadata.Name != "" {
			r.admitted[rel.Name] = &a
			r.rememberTraining(&a)
		} else {
			r.admitted[rel.Name] = nil
		}
		var st rollout.State
		if len(rel.State) > 0 && json.Unmarshal(rel.State, &st) == nil {
			r.states[rel.Name] = st
		}
		ri := server.ReleaseInfo(rel)
		r.relStatus[rel.Name] = FromWire(ri.Conditions)
		if ri.Denied != "" {
			r.denied[rel.Name] = ri.Denied
		}
		// Remember the stored record as saveRelease does, so a restart or a
		// new leader keeps the release's HealthySince (promotion gates).
		var info fleet.ReleaseInfo
		if len(rel.Status) > 0 && json.Unmarshal(rel.Status, &info) == nil {
			r.saved[rel.Name] = savedKey(rel.Spec, rel.State, info)
		}
	}
	if b, err := r.opts.Store.Meta(ctx, "admitted-commit"); err == nil {
		r.commit = string(b)
	}
	if b, err := r.opts.Store.Meta(ctx, "source-conditions"); err == nil {
		var cs []fleet.Condition
		if json.Unmarshal(b, &cs) == nil {
			r.source = FromWire(cs)
		}
	}
	ds, err := r.opts.Store.DesiredSince(ctx, 0)
	if err != nil {
		return err
	}
	for _, d := range ds {
		r.written[d.Target] = d.ETag
	}
	return nil
}

// Trigger asks for a pass soon (status reports, operator commands).
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// OnCommit admits rev when this replica leads, or keeps it for when it does.
func (r *Reconciler) OnCommit(ctx context.Context, rev source.Revision) {
	r.opts.Metrics.SourceFetches.WithLabelValues("new-commit").Inc()
	lctx, lead := r.leadCtx(ctx)
	if !lead {
		r.mu.Lock()
		r.pending = &rev
		r.fetched = rev.Commit
		r.mu.Unlock()
		return
	}
	if err := r.Admit(lctx, rev); err != nil {
		r.log.Error("admit commit", "commit", rev.Commit, "err", err)
	}
}

// Run reconciles every Interval, on triggers and when a rollout asks to be
// requeued, while this replica holds the leader lease, until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	go r.campaign(ctx)
	last := time.Time{}
	for {
		r.mu.Lock()
		wait := r.opts.Interval
		if r.requeue > 0 && r.requeue < wait {
			wait = r.requeue
		}
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.trigger:
			// Under a steady stream of status reports, passes take at most
			// a third of the time: the gap grows with the pass duration.
			minGap := max(r.opts.MinGap, 2*r.lastPass)
			if gap := minGap - time.Since(last); gap > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(gap):
				}
			}
		case <-t.C:
		}
		t.Stop()
		r.leaseMu.Lock()
		l, loaded := r.lease, r.loadedTerm
		r.leaseMu.Unlock()
		if !l.Valid() {
			if loaded != 0 {
				r.leaseMu.Lock()
				r.loadedTerm = 0
				r.leaseMu.Unlock()
				r.log.Info("following: the leader lease is not held", "term", l.Term)
			}
			continue
		}
		if loaded != l.Term {
			// Newly elected: another replica may have moved the state on.
			if err := r.elected(ctx, l.Term); err != nil {
				r.log.Error("take over as leader", "err", err)
				continue
			}
		}
		lctx, ok := r.leadCtx(ctx)
		if !ok {
			continue
		}
		r.mu.Lock()
		pending := r.pending
		r.pending = nil
		r.mu.Unlock()
		if pending != nil {
			if err := r.Admit(lctx, *pending); fenced(err) {
				r.mu.Lock()
				if r.pending == nil {
					r.pending = pending // for when this replica leads again
				}
				r.mu.Unlock()
				r.deposed(err)
				continue
			} else if err != nil {
				r.log.Error("admit commit", "commit", pending.Commit, "err", err)
			}
		} else if rev := r.readmitDue(); rev != nil {
			// A denial may lift with time (promotion gates): evaluate the
			// admitted commit again, at most once an interval.
			if err := r.Admit(lctx, *rev); err != nil {
				r.log.Error("re-admit commit", "commit", rev.Commit, "err", err)
			}
		}
		passStart := time.Now()
		if err := r.Reconcile(lctx); fenced(err) {
			r.deposed(err)
		} else if err != nil && ctx.Err() == nil {
			r.log.Error("reconcile", "err", err)
		}
		last = time.Now()
		r.lastPass = last.Sub(passStart)
	}
}

// readmitDue returns the last admitted commit when a release of it is
// denied and it was not evaluated within the last interval.
func (r *Reconciler) readmitDue() *source.Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.denied) == 0 || r.last == nil || time.Since(r.readmit) < r.opts.Interval {
		return nil
	}
	return r.last
}

// Reconcile runs one pass.
func (r *Reconciler) Reconcile(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconcileLocked(ctx)
}

func (r *Reconciler) status(name string) *Status {
	st := r.relStatus[name]
	if st == nil {
		st = &Status{}
		st.Name = name
		r.relStatus[name] = st
	}
	return st
}

// syncTargets reads targets enrolled or reporting since the last sync.
func (r *Reconciler) syncTargets(ctx context.Context) error {
	since := r.synced.Add(-5 * time.Second) // overlap: writes commit out of order
	if r.synced.IsZero() {
		since = time.Time{}
	}
	now := time.Now()
	ts, err := r.opts.Store.TargetsUpdatedSince(ctx, since)
	if err != nil {
		return err
	}
	added := false
	for _, t := range ts {
		ct := r.targets[t.ID]
		if ct == nil {
			ct = &cachedTarget{}
			r.targets[t.ID] = ct
			added = true
		}
		ct.target = fleet.Target{Name: t.ID, Labels: t.Labels, Facts: t.Facts}
		ct.sel = ct.target.SelectorLabels()
		ct.lastSeen = t.LastSeen
		ct.status = t.Status
	}
	if added {
		r.order = r.order[:0]
		for id := range r.targets {
			r.order = append(r.order, id)
		}
		slices.Sort(r.order)
	}
	r.synced = now
	return nil
}

func (r *Reconciler) reconcileLocked(ctx context.Context) (err error) {
	start := time.Now()
	defer func() {
		r.opts.Metrics.ReconcileDuration.Observe(time.Since(start).Seconds())
		if err != nil {
			r.opts.Metrics.ReconcileErrors.Inc()
		}
	}()
	cmds, err := r.opts.Store.TakeCommands(ctx)
	if err != nil {
		return err
	}
	command := map[string]string{}
	for _, c := range cmds {
		command[c.Release] = c.Command
	}
	if err := r.syncTargets(ctx); err != nil {
		return err
	}
	now := time.Now().UTC()
	var events []fleet.Event
	r.requeue = 0
	r.loadProfiles(ctx, now)
	// perTarget holds indexes into models: identical assignments share one
	// DesiredModel and identical lists one encoding.
	perTarget := make(map[string][]int32, len(r.targets))
	var models []fleet.DesiredModel
	names := make([]string, 0, len(r.admitted))
	for n := range r.admitted {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		a := r.admitted[name]
		if a == nil {
			if err := r.saveRelease(ctx, name, nil, fleet.ReleaseInfo{}); err != nil {
				return err
			}
			continue
		}
		evs, info := r.stepRelease(name, a, now, command[name])
		events = append(events, evs...)
		r.recordRollbacks(ctx, name, evs)
		index := map[rollout.Assignment]int32{}
		for t, asg := range r.assign[name] {
			if asg.Digest == "" && asg.Artifact == "" {
				continue
			}
			i, ok := index[asg]
			if !ok {
				i = int32(len(models))
				models = append(models, r.desiredModel(a, asg))
				index[asg] = i
			}
			perTarget[t] = append(perTarget[t], i)
		}
		if err := r.saveRelease(ctx, name, a, info); err != nil {
			return err
		}
	}
	r.recordDrift(ctx)
	events = append(events, r.offline(now)...)
	stepped := time.Since(start)
	changes := r.compose(models, perTarget)
	if len(changes) > 0 {
		composed := time.Since(start)
		if leaseLapsed(ctx) {
			return fmt.Errorf("write desired states: lease lapsed: %w", store.ErrFenced)
		}
		// Store first, then hand to the fleet API: whatever an agent is
		// told is stored, so another replica (or this one after a restart,
		// or a new leader) never serves it an older state, and a deposed
		// leader's refused write reaches no agent.
		rev, err := r.opts.Store.PutDesired(ctx, changes)
		if err != nil {
			return err
		}
		stored := time.Since(start)
		for i := range changes {
			changes[i].Rev = rev
			r.written[changes[i].Target] = changes[i].ETag
		}
		r.opts.Publish(changes)
		r.opts.Metrics.DesiredPublished.Add(float64(len(changes)))
		published := time.Since(start)
		r.opts.Metrics.DesiredWrites.Add(float64(len(changes)))
		r.log.Info("desired states written", "targets", len(changes), "revision", rev, "took", time.Since(start).String(),
			"step", stepped.String(), "compose", (composed - stepped).String(), "store", (stored - composed).String(), "published", published.String())
	}
	if len(events) > 0 {
		if err := r.opts.Store.AddEvents(ctx, events); err != nil {
			return err
		}
		r.notify(events)
	}
	r.phaseMetrics(now)
	ids := make(map[string]string, len(r.states))
	for name, st := range r.states {
		ids[name] = st.ID()
	}
	r.rollouts.Store(&ids)
	return nil
}

// RolloutID names the current rollout of a release ("" when none), as the
// desired states and lineage call it. Safe to call from any goroutine.
func (r *Reconciler) RolloutID(release string) string {
	if m := r.rollouts.Load(); m != nil {
		return (*m)[release]
	}
	return ""
}

// stepRelease runs the rollout engine for one release.
func (r *Reconciler) stepRelease(name string, a *Admitted, now time.Time, command string) ([]fleet.Event, fleet.ReleaseInfo) {
	st := r.status(name)
	var selected []rollout.TargetState
	var driftEvents []fleet.Event
	for _, id := range r.order {
		ct := r.targets[id]
		if _, unfit := a.Unfit[id]; unfit || !matchesAny(a.Profiles, ct.sel) {
			continue
		}
		ts := rollout.TargetState{Name: id, TimeZone: ct.target.Facts.TimeZone, LastSeen: ct.lastSeen,
			Online: fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter)}
		if ct.status != nil {
			ts.Metrics = ct.status.Metrics
			for _, rs := range ct.status.Releases {
				if rs.Release == name {
					ts.Status = rs
				}
			}
		}
		// Drift metrics are plain gate inputs, next to the target's own.
		if dm, evs, abort := r.observeDrift(a, id, ts.Status, now); len(dm) > 0 || len(evs) > 0 {
			if len(dm) > 0 {
				m := make(map[string]float64, len(ts.Metrics)+len(dm))
				maps.Copy(m, ts.Metrics)
				maps.Copy(m, dm)
				ts.Metrics = m
			}
			for i := range evs {
				evs[i].Commit = a.Commit
			}
			driftEvents = append(driftEvents, evs...)
			if abort && command == "" {
				// action: rollback — a rollout in progress is aborted, a
				// succeeded one goes back to the model good before it.
				switch r.states[name].Phase {
				case rollout.PhaseProgressing, rollout.PhasePaused:
					command = rollout.CommandAbort
				case rollout.PhaseSucceeded:
					command = rollout.CommandRollback
				}
			}
		}
		selected = append(selected, ts)
	}
	info := fleet.ReleaseInfo{Model: a.Model.Metadata.Name, Version: a.Model.Spec.Version, Artifact: a.Model.Spec.Artifact,
		RolloutPolicy: a.Release.Spec.RolloutPolicy, Waves: len(a.Policy.Spec.Waves), Suspended: a.Release.Spec.Suspend, Targets: len(selected)}
	for _, p := range a.Profiles {
		info.Profiles = append(info.Profiles, p.Metadata.Name)
	}
	events := driftEvents
	prev := r.states[name]
	if a.Release.Spec.Suspend {
		markFailed(st, false, ReasonSuspended, "release is suspended: targets keep what they were told")
	} else {
		out := rollout.Step(rollout.Input{Now: now, Release: a.Release, Model: a.Model, Policy: a.Policy, Targets: selected, Prev: prev, Command: command})
		r.states[name] = out.State
		r.assign[name] = out.Desired
		if out.RequeueAfter > 0 && (r.requeue == 0 || out.RequeueAfter < r.requeue) {
			r.requeue = out.RequeueAfter
		}
		for _, e := range out.Events {
			events = append(events, fleet.Event{Time: now, Type: e.Type, Reason: e.Reason, Release: name, Commit: a.Commit, Message: e.Message, Targets: e.Targets,
				Key: eventKey(out.State, e.Type, e.Message)})
		}
		switch s := out.State; s.Phase {
		case rollout.PhaseSucceeded:
			markReady(st, ReasonSucceeded, "%s rolled out to %d targets", digest.Digest(s.Target.Digest).ShortHex(), len(selected))
		case rollout.PhaseProgressing, "":
			markReconciling(st, ReasonProgressing, "wave %d: %s", s.Wave+1, s.Message)
		case rollout.PhasePaused:
			markFailed(st, false, ReasonPaused, "rollout paused: %s", s.Message)
		case rollout.PhaseAborted:
			markFailed(st, true, ReasonAborted, "rollout aborted: %s", s.Message)
		case rollout.PhaseRolledBack:
			markFailed(st, true, ReasonRolledBack, "rolled back: %s", s.Message)
		}
	}
	if msg := r.denied[name]; msg != "" {
		markFailed(st, true, ReasonPolicyDenied, "newest commit denied, keeping %s: %s", digest.Short(a.Commit), msg)
		info.Denied = msg
	}
	s := r.states[name]
	info.Name, info.Digest, info.LastGood, info.Phase, info.Wave = name, s.Target.Digest, s.LastGood.Digest, s.Phase, s.Wave
	info.Reason, info.Message, info.Commit = s.Reason, s.Message, a.Commit
	healthyAll := len(selected) > 0
	for _, ts := range selected {
		if r.assign[name][ts.Name].Digest == s.Target.Digest && s.Target.Digest != "" {
			info.Updated++
		}
		switch {
		case (ts.Status.Phase == fleet.PhaseHealthy || ts.Status.Phase == fleet.PhaseRolledBack) && ts.Status.Digest == s.Target.Digest:
			info.Healthy++
		case ts.Status.Phase == fleet.PhaseFailed:
			info.Failed++
			healthyAll = false
		default:
			healthyAll = false
		}
	}
	if healthyAll {
		since := now
		if old := r.prevHealthySince(name); old != nil {
			since = *old
		}
		info.HealthySince = &since
	}
	info.Conditions = st.Wire()
	names := make([]string, len(selected))
	for i, ts := range selected {
		names[i] = ts.Name
	}
	window, _, _ := driftConfig(a.Release)
	info.Drift = r.driftInfo(name, names, window)
	r.opts.Metrics.RolloutWave.WithLabelValues(name).Set(float64(s.Wave))
	if len(selected) > 0 {
		r.opts.Metrics.RolloutProgress.WithLabelValues(name).Set(float64(info.Updated) / float64(len(selected)))
	}
	return events, info
}

// recordRollbacks appends a rolledBack lineage edge for every rollback the
// engine reported for release.
func (r *Reconciler) recordRollbacks(ctx context.Context, release string, evs []fleet.Event) {
	if r.opts.Lineage == nil {
		return
	}
	st := r.states[release]
	for _, e := range evs {
		if e.Type != manifests.EventRolledBack {
			continue
		}
		f := lineage.RollbackFacts{Release: release, Rollout: st.ID(), From: st.Target.Digest, To: st.LastGood.Digest,
			Targets: e.Targets, Time: e.Time, Reason: e.Reason}
		if err := r.opts.Lineage.RecordRollback(ctx, f); err != nil {
			r.log.Warn("record rollback in lineage", "release", release, "err", err)
		}
	}
}

func (r *Reconciler) prevHealthySince(name string) *time.Time {
	old, ok := r.saved[name]
	if !ok {
		return nil
	}
	var rec struct {
		Status fleet.ReleaseInfo
	}
	if json.Unmarshal([]byte(old), &rec) != nil {
		return nil
	}
	return rec.Status.HealthySince
}

func matchesAny(profiles []manifests.DeviceProfile, labels map[string]string) bool {
	for _, p := range profiles {
		if p.Spec.Selector.Matches(labels) {
			return true
		}
	}
	return false
}

func (r *Reconciler) desiredModel(a *Admitted, asg rollout.Assignment) fleet.DesiredModel {
	dm := fleet.DesiredModel{Release: a.Release.Metadata.Name, Model: a.Model.Metadata.Name, Artifact: asg.Artifact, Digest: asg.Digest,
		Rollout: r.states[a.Release.Metadata.Name].ID(), DownloadTimeout: a.Policy.Spec.DownloadTimeout.Duration}
	if asg.Artifact == a.Model.Spec.Artifact {
		dm.Version = a.Model.Spec.Version
	}
	if r.opts.PlainHTTP != nil {
		dm.PlainHTTP = r.opts.PlainHTTP(asg.Artifact)
	}
	rt := a.Release.Spec.Runtime
	dm.Runtime = fleet.Runtime{Path: rt.Path, Restart: rt.Restart, Metrics: rt.Metrics}
	if hc := rt.HealthCheck; hc != nil {
		dm.Runtime.HealthCheck = &fleet.HealthCheck{HTTP: hc.HTTP, Exec: hc.Exec, Timeout: hc.Timeout.Duration, Retries: hc.Retries, Period: hc.Period.Duration}
	}
	dm.Kubernetes = wireKubernetes(a.Release.Spec.Kubernetes)
	return dm
}

// wireKubernetes is a Release's spec.kubernetes as desired state carries it.
func wireKubernetes(k *manifests.Kubernetes) *fleet.Kubernetes {
	if k == nil {
		return nil
	}
	w := &fleet.Kubernetes{Image: k.Image, ServingRuntime: k.ServingRuntime, ModelFormat: k.ModelFormat,
		Replicas: k.Replicas, Port: k.Port, Prune: k.Prune}
	quantities := func(m map[string]manifests.KubeQuantity) map[string]string {
		if len(m) == 0 {
			return nil
		}
		out := make(map[string]string, len(m))
		for n, q := range m {
			out[n] = string(q)
		}
		return out
	}
	w.Requests, w.Limits = quantities(k.Resources.Requests), quantities(k.Resources.Limits)
	for _, e := range k.Env {
		w.Env = append(w.Env, fleet.EnvVar{Name: e.Name, Value: e.Value})
	}
	return w
}

// compose builds each target's desired state and returns those whose tag
// differs from the one stored. Identical model lists are encoded once.
func (r *Reconciler) compose(models []fleet.DesiredModel, perTarget map[string][]int32) []store.Desired {
	var changes []store.Desired
	encoded := map[string][2]string{} // list of indexes → etag, models JSON
	key := make([]byte, 0, 64)
	for _, id := range r.order {
		idx := perTarget[id]
		key = key[:0]
		for _, i := range idx {
			key = append(key, byte(i), byte(i>>8), byte(i>>16), byte(i>>24))
		}
		enc, ok := encoded[string(key)]
		if !ok {
			list := make([]fleet.DesiredModel, len(idx))
			for j, i := range idx {
				list[j] = models[i]
			}
			b, _ := json.Marshal(list)
			enc = [2]string{fleetstate.ETag(list), string(b)}
			encoded[string(key)] = enc
		}
		if r.written[id] == enc[0] {
			continue
		}
		body := `{"target":` + strconv.Quote(id) + `,"etag":"` + enc[0] + `","models":` + enc[1] + `}`
		changes = append(changes, store.Desired{Target: id, ETag: enc[0], Body: []byte(body)})
	}
	return changes
}

// saveRelease stores a release's admitted spec, rollout state and status
// when any changed.
func (r *Reconciler) saveRelease(ctx context.Context, name string, a *Admitted, info fleet.ReleaseInfo) error {
	if a == nil {
		st := r.status(name)
		info = fleet.ReleaseInfo{Denied: r.denied[name], Conditions: st.Wire()}
		info.Name = name
		info.Phase = rollout.PhaseDenied
	}
	spec, _ := json.Marshal(a)
	state, _ := json.Marshal(r.states[name])
	status, _ := json.Marshal(info)
	key := savedKey(spec, state, info)
	if r.saved[name] == key {
		return nil
	}
	commit := ""
	if a != nil {
		commit = a.Commit
	}
	if err := r.opts.Store.PutRelease(ctx, store.Release{Name: name, Commit: commit, Spec: spec, State: state, Status: status}); err != nil {
		return fmt.Errorf("save release %s: %w", name, err)
	}
	r.saved[name] = key
	return nil
}

// savedKey is what r.saved keeps of a stored release: its spec, rollout
// state and status (prevHealthySince reads the status back).
func savedKey(spec, state []byte, info fleet.ReleaseInfo) string {
	key, _ := json.Marshal(struct {
		Spec, State json.RawMessage
		Status      fleet.ReleaseInfo
	}{spec, state, info})
	return string(key)
}

// offline returns a TargetOffline event for targets that went quiet.
func (r *Reconciler) offline(now time.Time) []fleet.Event {
	var gone []string
	for _, id := range r.order {
		ct := r.targets[id]
		on := fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter)
		if was, ok := r.online[id]; ok && was && !on {
			gone = append(gone, id)
		}
		r.online[id] = on
	}
	if len(gone) == 0 {
		return nil
	}
	msg := fmt.Sprintf("%d targets offline (no contact for %s)", len(gone), r.opts.OfflineAfter)
	if len(gone) > 100 {
		gone = gone[:100]
	}
	return []fleet.Event{{Time: now, Type: manifests.EventTargetOffline, Message: msg, Targets: gone}}
}

func (r *Reconciler) phaseMetrics(now time.Time) {
	counts := map[string]int{}
	online := 0
	for _, ct := range r.targets {
		phase := "Unknown"
		if ct.status != nil {
			if p := fleetstate.Phase(ct.status.Releases); p != "" {
				phase = p
			}
		}
		counts[phase]++
		if fleetstate.Online(ct.lastSeen, now, r.opts.OfflineAfter) {
			online++
		}
	}
	r.opts.Metrics.TargetsByPhase.Reset()
	for p, n := range counts {
		r.opts.Metrics.TargetsByPhase.WithLabelValues(p).Set(float64(n))
	}
	r.opts.Metrics.TargetsOnline.Set(float64(online))
}

func (r *Reconciler) notify(evs []fleet.Event) {
	if r.opts.Notify != nil && len(evs) > 0 {
		r.opts.Notify(slices.Clone(r.alerts), evs)
	}
}
