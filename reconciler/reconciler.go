package reconciler

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/evaluations"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/record"
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
	// Notify queues every recorded event for the Alerts subscribed to it
	// (the alert outbox, notify.Outbox.Enqueue), with the ctx of the step
	// that recorded it, so the deliveries commit with the step; optional.
	Notify func(ctx context.Context, alerts []manifests.Alert, evs []fleet.Event) error
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
	// Inspector and Datasets check, at admission, that the model artifact is
	// in its registry and every dataset in its store (as cairn plan does);
	// nil skips that check.
	Inspector plan.ArtifactInspector
	Datasets  plan.DatasetChecker
	// OnInput sees every policy input document admission evaluates
	// (plan.Options.OnInput); optional.
	OnInput func(*policies.Input)
	// Evaluations keeps the evaluation runs asked of evaluator agents and
	// their results, which admission's policy input reads; optional
	// (without it no evaluation is scheduled).
	Evaluations *evaluations.Store
	// PolicyTimeout bounds the evaluation of one release's policies
	// (policies.EvalTimeout); a release over it is denied.
	PolicyTimeout time.Duration
	// LeaseRenew is how often the leader lease is taken or renewed (3s):
	// a third of the store's lease TTL or less.
	LeaseRenew time.Duration
}

// Admitted is what admission keeps of one release (record.Admitted).
type Admitted = record.Admitted

// releaseState is what the reconciler holds of one release between passes:
// its record as last stored, the conditions the summary sets, the newest
// commit's denial and the assignments of the last rollout step.
type releaseState struct {
	rec    record.Release
	cond   *Status
	denied string // newest commit's denial; "" when admitted
	// held is the newest commit's admission error other than a denial
	// (step_admit.go): Stalling ArtifactMissing, or Waiting
	// ArtifactUnavailable with its requeue; nil when admitted or denied.
	held   error
	assign map[string]rollout.Assignment // target → model, from the last step
	// candidate is the newest commit's model and evaluation, admitted or
	// not; nil when it declares no evaluation.
	candidate *evalCandidate
	stored    string // encoding last written: unchanged records are not rewritten
}

// admitted is the release's admitted snapshot, nil when never admitted or
// when its record does not decode.
func (rs *releaseState) admitted() *Admitted { return rs.rec.Admitted }

// Reconciler admits commits and drives every target to its desired state.
type Reconciler struct {
	opts    Options
	log     *slog.Logger
	trigger chan struct{}
	src     *sourceState // own lock: read by the status API

	// admitMu serialises admissions: held by Admit from start to end,
	// also while it decodes, compiles and evaluates without mu, and
	// always taken before mu.
	admitMu sync.Mutex
	// mu guards the state: held by a pass and by Admit except while it
	// decodes the commit and compiles and evaluates its policies (so a
	// slow policy holds no pass); never by the status API.
	mu       sync.Mutex
	commit   string           // admitted
	pending  *source.Revision // fetched while not leader
	last     *source.Revision // last commit admitted, re-evaluated while a release is denied
	readmit  time.Time        // when last was last re-evaluated
	gates    admitGates       // what that evaluation read (readmitDue)
	alerts   []manifests.Alert
	releases map[string]*releaseState
	kept     map[string]bool // removed releases kept installed (prune: false): kept.go
	fleet    targetCache
	inbox    inbox // reports stored since the last pass; own lock
	requeue  time.Duration
	lastPass time.Duration
	profiles map[string]*profileEntry // dataset digest → drift references
	drift    map[driftKey]*driftState // sliding windows, this leader's since it leads
	// trainedOn maps each model digest admitted since start to its
	// training datasets: a target rolled back to an earlier model is
	// compared with that model's data.
	trainedOn map[string][]manifests.Dataset
	// evalPending are the evaluation runs pending at the last pass: those
	// reported since are announced (Evaluated).
	evalPending map[string]bool
	// driftFacts are the drift alarms of this pass, for lineage.
	driftFacts []lineage.DriftFacts

	// staged are the writes of the admission in progress, made by the
	// commit step of the pass it runs (nil outside Admit); reload is set
	// when a pass failed after changing the state in memory, which the
	// next Admit or Reconcile then reloads from the store.
	staged *stagedAdmission
	reload bool

	leaseMu    sync.Mutex
	lease      store.Lease // the last lease campaign got
	loadedTerm int64       // term under which the state was last loaded; 0: following

	rollouts atomic.Pointer[map[string]string] // release → rollout id, read without mu
	// settled is whether the last pass left every release settled, so that
	// only reports that change what a pass reads trigger one
	// (reportfilter.go); fleetSize the targets it saw.
	settled   atomic.Bool
	fleetSize atomic.Int64
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
	return &Reconciler{opts: opts, log: opts.Logger, trigger: make(chan struct{}, 1), src: newSourceState(),
		releases: map[string]*releaseState{}, kept: map[string]bool{}, fleet: newTargetCache(),
		profiles: map[string]*profileEntry{}, drift: map[driftKey]*driftState{}, trainedOn: map[string][]manifests.Dataset{},
		inbox: inbox{filter: reportFilter{seed: maphash.MakeSeed()}}}
}

// release returns the state of a release, creating it.
func (r *Reconciler) release(name string) *releaseState {
	rs := r.releases[name]
	if rs == nil {
		rs = &releaseState{rec: record.Release{Name: name}, cond: &Status{}}
		rs.cond.Name = name
		r.releases[name] = rs
	}
	return rs
}

// names are the releases in order.
func (r *Reconciler) names() []string {
	names := make([]string, 0, len(r.releases))
	for n := range r.releases {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
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
		r.mu.Unlock()
		r.src.setFetched(rev.Commit)
		return
	}
	if err := r.Admit(lctx, rev); err != nil {
		r.log.Error("admit commit", "commit", rev.Commit, "err", err)
	}
}

// RolloutID names the current rollout of a release ("" when none) as
// lineage calls it: its rollout.State.Key, unique where the desired states'
// short State.ID is not. Safe to call from any goroutine.
func (r *Reconciler) RolloutID(release string) string {
	if m := r.rollouts.Load(); m != nil {
		return (*m)[release]
	}
	return ""
}

func (r *Reconciler) notify(ctx context.Context, evs []fleet.Event) error {
	if r.opts.Notify != nil && len(evs) > 0 {
		if err := r.opts.Notify(ctx, slices.Clone(r.alerts), evs); err != nil {
			return fmt.Errorf("queue alerts: %w", err)
		}
	}
	return nil
}
