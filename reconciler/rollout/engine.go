package rollout

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// Step advances a release's rollout by one decision. It is pure: every time
// comes from in.Now and everything remembered from in.Prev.
//
// A new model digest starts a rollout through the policy's waves (the
// stable assignment of AssignWaves). The targets of a started wave get
// the new model as update windows and maxUnavailable allow; the others keep
// the last good model (none on a first rollout). The next wave starts once
// every online target of the started waves runs the new model healthily and
// the wave has baked with its gates holding. Failed targets beyond the abort
// threshold, or a gate still failing when the bake ends, fail the rollout:
// rolled back to the last good model, or paused (onFailure: pause).
func Step(in Input) Output {
	e := &engine{in: in, st: in.Prev, out: Output{Desired: map[string]Assignment{}}}
	e.run()
	e.out.State = e.st
	return e.out
}

type engine struct {
	in  Input
	st  State
	out Output

	names  []string
	byName map[string]int32 // index in in.Targets
	// pos and wave are, for names[i], its index in in.Targets and its
	// wave: the loops over the whole fleet read them, not a map by name.
	pos     []int32
	wave    []int32
	waves   [][]string
	win     *window
	maxUnav int // 0: unbounded

	// Sets of the State's lists, for lookups in fleets of 100,000 targets.
	failed, updating, stale map[string]bool
}

func setOf(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, n := range l {
		m[n] = true
	}
	return m
}

// sync rebuilds the lookup sets from the State's lists.
func (e *engine) sync() {
	e.failed, e.updating, e.stale = setOf(e.st.Failed), setOf(e.st.Updating), setOf(e.st.Stale)
}

func (e *engine) event(typ, reason, msg string, targets []string) {
	e.out.Events = append(e.out.Events, Event{Type: typ, Reason: reason, Message: msg, Targets: targets, Wave: e.st.Wave})
}

func (e *engine) requeue(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if e.out.RequeueAfter == 0 || d < e.out.RequeueAfter {
		e.out.RequeueAfter = d
	}
}

func (e *engine) run() {
	in := e.in
	e.st.Release = in.Release.Metadata.Name
	e.index()

	want := Assignment{Digest: digest.OfRef(in.Model.Spec.Artifact).String(), Artifact: in.Model.Spec.Artifact}
	switch {
	case want.Digest != "" && want.Digest != e.st.Target.Digest:
		e.start(want)
	case want.Digest != "" && want.Artifact != e.st.Target.Artifact:
		e.st.Target.Artifact = want.Artifact
	}
	if e.st.Target.IsZero() {
		return // nothing to roll out: no model of this release anywhere
	}
	if in.Command != "" {
		e.command(in.Command)
	}
	e.sync()
	e.recordFailures()

	switch e.st.Phase {
	case PhaseProgressing:
		e.progress()
	case PhasePaused:
		e.assign(false)
	case PhaseSucceeded:
		for _, n := range e.names {
			e.out.Desired[n] = e.st.Target
		}
	default: // RolledBack, Aborted
		for i := range e.names {
			e.setFallback(i)
		}
	}
	e.count()
}

// lookup returns the state of target n, false when it is not selected.
func (e *engine) lookup(n string) (TargetState, bool) {
	i, ok := e.byName[n]
	if !ok {
		return TargetState{}, false
	}
	return e.in.Targets[i], true
}

// target returns the state of target n, the zero state when it is not
// selected.
func (e *engine) target(n string) TargetState {
	t, _ := e.lookup(n)
	return t
}

// at is the state of target names[i].
func (e *engine) at(i int) *TargetState { return &e.in.Targets[e.pos[i]] }

// index computes the waves and per-target lookups of this step.
func (e *engine) index() {
	e.byName = make(map[string]int32, len(e.in.Targets))
	e.names = make([]string, 0, len(e.in.Targets))
	for i, t := range e.in.Targets {
		if _, dup := e.byName[t.Name]; dup {
			continue
		}
		e.byName[t.Name] = int32(i)
		e.names = append(e.names, t.Name)
	}
	slices.Sort(e.names)
	e.pos = make([]int32, len(e.names))
	for i, n := range e.names {
		e.pos[i] = e.byName[n]
	}
	e.out.Desired = make(map[string]Assignment, len(e.names))
	e.waves, e.wave = assignWaves(e.in.Release.Metadata.Name, e.in.Policy.Spec.Waves, e.names)
	e.st.Waves = len(e.waves)
	var err error
	if e.win, err = newWindow(e.in.Policy.Spec.Window); err != nil {
		e.st.Message = err.Error()
	}
	e.maxUnav = parseMaxUnavailable(e.in.Policy.Spec.MaxUnavailable, len(e.names))
}

// parseMaxUnavailable reads "3" or "10%" of total; 0 means unbounded. A
// percent bound is at least 1.
func parseMaxUnavailable(s string, total int) int {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 {
			return 0
		}
		return max(1, int(math.Floor(float64(total)*f/100)))
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0
	}
	return n
}

// start begins a rollout of want, superseding the current one.
func (e *engine) start(want Assignment) {
	st := &e.st
	switch st.Phase {
	case PhaseSucceeded:
		st.LastGood = st.Target
		st.Superseded = Assignment{}
	case PhaseProgressing, PhasePaused:
		if !st.Target.IsZero() {
			e.event(manifests.EventRolloutSuperseded, "NewDigest",
				fmt.Sprintf("rollout of %s superseded by %s at wave %d", digest.Short(st.Target.Digest), digest.Short(want.Digest), st.Wave+1), nil)
			st.Superseded = st.Target
			st.SupersededWave = st.Wave
		}
	default: // RolledBack, Aborted, never rolled out: the last good stays pinned
		st.Superseded = Assignment{}
	}
	if st.Superseded == st.LastGood {
		st.Superseded = Assignment{}
	}
	st.Target = want
	st.Phase = PhaseProgressing
	st.Wave = 0
	st.Started = e.in.Now
	st.WaveStarted = e.in.Now
	st.BakeStarted = time.Time{}
	st.Failed, st.Updating, st.Stale = nil, nil, nil
	st.FailedAcked = 0
	st.Reason, st.Message, st.PausedBy = "", "", ""
	e.event(manifests.EventRolloutStarted, "NewDigest",
		fmt.Sprintf("rolling out %s to %d targets in %d waves", digest.Short(want.Digest), len(e.names), len(e.waves)), nil)
	e.waveStarted()
}

// waveStarted announces the wave the rollout is now in (st.Wave).
func (e *engine) waveStarted() {
	w := e.st.Wave
	e.event(manifests.EventWaveStarted, "", fmt.Sprintf("wave %d of %d started: %d targets", w+1, len(e.waves), len(e.waves[w])), e.waves[w])
}

// recordFailures adds targets that report Failed on the rolled-out digest.
func (e *engine) recordFailures() {
	st := &e.st
	if st.Phase != PhaseProgressing && st.Phase != PhasePaused {
		return
	}
	var stale []string
	for _, n := range st.Stale {
		t, ok := e.lookup(n)
		if ok && t.Status.Phase == fleet.PhaseFailed && t.Status.Desired == st.Target.Digest {
			stale = append(stale, n)
		}
	}
	st.Stale = stale
	e.stale = setOf(stale)
	added := false
	for i, n := range e.names {
		t := e.at(i)
		if t.Status.Phase != fleet.PhaseFailed || t.Status.Desired != st.Target.Digest {
			continue
		}
		if e.stale[n] || e.failed[n] {
			continue
		}
		st.Failed = append(st.Failed, n)
		e.failed[n] = true
		added = true
	}
	if added {
		slices.Sort(st.Failed)
	}
}

func (e *engine) healthyOn(n, digest string) bool {
	t := e.target(n)
	return healthy(&t, digest)
}

// healthy reports whether t runs digest healthily.
func healthy(t *TargetState, digest string) bool {
	return t.Status.Digest == digest && (t.Status.Phase == fleet.PhaseHealthy || t.Status.Phase == fleet.PhaseRolledBack)
}

// started reports whether target names[i] has been told to install the new
// model.
func (e *engine) started(i int) bool {
	t, n := e.at(i), e.names[i]
	d := e.st.Target.Digest
	return t.Status.Digest == d || t.Status.Desired == d ||
		e.updating[n] || e.failed[n]
}

// setFallback gives target names[i] the model it runs while not (or no
// longer) on the rolled-out one.
func (e *engine) setFallback(i int) {
	st := &e.st
	t, n := e.at(i), e.names[i]
	switch {
	case !st.Superseded.IsZero() && t.Status.Digest == st.Superseded.Digest:
		e.out.Desired[n] = st.Superseded
	case !st.LastGood.IsZero():
		e.out.Desired[n] = st.LastGood
	case !st.Superseded.IsZero() && int(e.wave[i]) <= st.SupersededWave:
		e.out.Desired[n] = st.Superseded
	}
}

// assign decides every target's model for a progressing (startNew) or held
// rollout. It returns how many online targets wait for their window.
func (e *engine) assign(startNew bool) int {
	st := &e.st
	// Drop targets that are done updating (healthy on the new model, failed,
	// or gone) from the in-flight set.
	upd := st.Updating[:0:0]
	for _, n := range st.Updating {
		if _, ok := e.byName[n]; ok && !e.healthyOn(n, st.Target.Digest) && !e.failed[n] {
			upd = append(upd, n)
		}
	}
	st.Updating = upd
	e.updating = setOf(upd)
	waiting := 0
	for i, n := range e.names {
		if e.started(i) {
			e.out.Desired[n] = st.Target
			continue
		}
		if !startNew || int(e.wave[i]) > st.Wave {
			e.setFallback(i)
			continue
		}
		t := e.at(i)
		if open, next := e.win.Open(e.in.Now, t.TimeZone); !open {
			if t.Online {
				waiting++
			}
			e.requeue(next.Sub(e.in.Now))
			e.setFallback(i)
			continue
		}
		if e.maxUnav > 0 && len(st.Updating) >= e.maxUnav {
			e.setFallback(i)
			continue
		}
		st.Updating = append(st.Updating, n)
		e.updating[n] = true
		e.out.Desired[n] = st.Target
	}
	return waiting
}

// progress moves a progressing rollout on: assign, check failures, bake,
// gates, next wave, done.
func (e *engine) progress() {
	st := &e.st
	if e.in.Release.Spec.Suspend {
		st.Reason, st.Message = ReasonSuspended, "release is suspended"
		e.assign(false)
		return
	}
	for range len(e.waves) + 1 {
		st.Reason, st.Message = "", ""
		if e.aborting() {
			return
		}
		waiting := e.assign(true)
		// Every online target of the started waves must run the new model.
		pending := 0
		for i, n := range e.names {
			t := e.at(i)
			if int(e.wave[i]) > st.Wave || e.failed[n] || healthy(t, st.Target.Digest) {
				continue
			}
			if t.Online {
				pending++
			}
		}
		if waiting > 0 {
			st.BakeStarted = time.Time{}
			st.Reason, st.Message = ReasonWaitingWindow, fmt.Sprintf("wave %d/%d: %d targets wait for their update window", st.Wave+1, len(e.waves), waiting)
			return
		}
		if pending > 0 {
			// A bake not yet done starts over once every target is up;
			// a finished one stays finished (a late target catching up).
			if !st.BakeStarted.IsZero() && e.in.Now.Before(st.BakeStarted.Add(e.bake(st.Wave))) {
				st.BakeStarted = time.Time{}
			}
			st.Reason, st.Message = ReasonWaitingTargets, fmt.Sprintf("wave %d/%d: %d targets updating", st.Wave+1, len(e.waves), pending)
			return
		}
		if st.BakeStarted.IsZero() {
			st.BakeStarted = e.in.Now
		}
		bakeEnd := st.BakeStarted.Add(e.bake(st.Wave))
		holding, ended := e.gates(bakeEnd)
		if ended {
			return
		}
		if holding != "" {
			st.Reason, st.Message = ReasonGateHolding, fmt.Sprintf("wave %d/%d held until %s: %s", st.Wave+1, len(e.waves), bakeEnd.UTC().Format(time.RFC3339), holding)
			e.requeue(bakeEnd.Sub(e.in.Now))
			return
		}
		if e.in.Now.Before(bakeEnd) {
			st.Reason, st.Message = ReasonBaking, fmt.Sprintf("wave %d/%d baking until %s", st.Wave+1, len(e.waves), bakeEnd.UTC().Format(time.RFC3339))
			e.requeue(bakeEnd.Sub(e.in.Now))
			return
		}
		if st.Wave+1 < len(e.waves) {
			st.Wave++
			st.WaveStarted, st.BakeStarted = e.in.Now, time.Time{}
			e.waveStarted()
			continue
		}
		// The last wave has baked: done once every target runs it.
		for i, n := range e.names {
			if !healthy(e.at(i), st.Target.Digest) && !e.failed[n] {
				st.Reason, st.Message = ReasonWaitingTargets, fmt.Sprintf("all waves started; %s and others not updated yet (offline)", n)
				return
			}
		}
		st.Phase, st.Updating = PhaseSucceeded, nil
		if st.LastGood != st.Target {
			st.Previous = st.LastGood
		}
		st.LastGood, st.Superseded = st.Target, Assignment{}
		st.Message = fmt.Sprintf("%s healthy on %d targets", digest.Short(st.Target.Digest), len(e.names)-len(st.Failed))
		e.event(manifests.EventRolloutDone, "", st.Message, nil)
		return
	}
}

func (e *engine) bake(wave int) time.Duration {
	if wave < len(e.in.Policy.Spec.Waves) {
		return e.in.Policy.Spec.Waves[wave].Bake.Duration
	}
	return 0
}

// aborting fails the rollout when the failed targets pass the abort
// threshold: at least minFailed (default 1) and failedPercent of the targets
// of the started waves.
func (e *engine) aborting() bool {
	st := &e.st
	failed := len(st.Failed) - st.FailedAcked
	if failed <= 0 {
		return false
	}
	minFailed, pct := 1, 0.0
	if a := e.in.Policy.Spec.Abort; a != nil {
		if a.MinFailed > 0 {
			minFailed = a.MinFailed
		}
		pct = a.FailedPercent
	}
	attempted := 0
	for i := range e.names {
		if int(e.wave[i]) <= st.Wave || e.started(i) {
			attempted++
		}
	}
	if failed < minFailed || float64(failed)*100 < pct*float64(max(attempted, 1)) {
		return false
	}
	msg := fmt.Sprintf("%d of %d targets failed on %s: %s", failed, attempted, digest.Short(st.Target.Digest), strings.Join(st.Failed, ", "))
	// Say why, as the first failed target reported it (a download timeout,
	// a failed health check).
	if n := st.Failed[len(st.Failed)-failed]; e.target(n).Status.Message != "" {
		why := e.target(n).Status.Message
		if len(why) > 300 {
			why = why[:300] + "…"
		}
		msg += fmt.Sprintf(" (%s: %s)", n, why)
	}
	e.fail(ReasonTargetsFailed, msg)
	return true
}

// fail ends or holds the rollout per the policy's onFailure.
func (e *engine) fail(reason, msg string) {
	st := &e.st
	st.Reason = reason
	e.event(manifests.EventRolloutFailed, reason, msg, slices.Clone(st.Failed))
	if e.in.Policy.Spec.OnFailure == manifests.OnFailurePause {
		st.Phase, st.PausedBy, st.Message = PhasePaused, "failure", msg+"; paused for an operator"
		e.event(manifests.EventRolloutPaused, reason, st.Message, nil)
		e.assign(false)
		return
	}
	st.Phase, st.Updating = PhaseRolledBack, nil
	st.Message = fmt.Sprintf("%s; rolled back to %s", msg, orNone(st.LastGood.Digest))
	// The targets of the started waves were sent the failed digest: they are
	// the ones rolled back (lineage ends their deployments with this event).
	var back []string
	for i := 0; i <= st.Wave && i < len(e.waves); i++ {
		back = append(back, e.waves[i]...)
	}
	slices.Sort(back)
	e.event(manifests.EventRolledBack, reason, st.Message, back)
	for i := range e.names {
		e.setFallback(i)
	}
}

func (e *engine) count() {
	e.st.Targets, e.st.Updated = len(e.names), 0
	for i := range e.names {
		if healthy(e.at(i), e.st.Target.Digest) {
			e.st.Updated++
		}
	}
}

// ID names the rollout attempt of a state: it changes with a new digest and
// with every retry, so agents can tell a retried rollout from the one they
// failed. Servers put it in fleet.DesiredModel.Rollout.
func (s State) ID() string {
	if s.Target.IsZero() {
		return ""
	}
	return fmt.Sprintf("%s-%s-%d", s.Release, digest.Digest(s.Target.Digest).ShortHex(), s.Started.Unix())
}

// Key identifies the rollout attempt of a state in full ("" when none):
// its release, whole digest and start time in nanoseconds. ID, short
// enough to read, is not unique: two rollouts of digests sharing their
// first 12 hex digits started within one second share it. Event keys and
// the lineage's rollout nodes use Key; it is derived from what every
// stored State holds, so states stored before it existed have one too.
func (s State) Key() string {
	if s.Target.IsZero() {
		return ""
	}
	return s.Release + "|" + s.Target.Digest + "|" + strconv.FormatInt(s.Started.UnixNano(), 10)
}

func orNone(d string) string {
	if d == "" {
		return "no model"
	}
	return digest.Short(d)
}
