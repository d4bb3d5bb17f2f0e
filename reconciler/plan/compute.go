package plan

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/errdef"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/output"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// Compute plans snap against the inventory: for every release the targets its
// profiles select, those that cannot take its model and why, the waves of its
// rollout policy over the others (AssignWaves, as the rollout engine does),
// the bytes they must download and the policy verdicts. With opts.Base it
// also says what changed since the base: model digest from → to, releases
// added and removed. It does no I/O but opts.Inspector's (called once per
// distinct artifact, up to 8 at a time); inv may be nil (no targets).
func Compute(ctx context.Context, snap *manifests.Snapshot, inv *fleet.Inventory, opts Options) (*Plan, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if inv == nil {
		inv = &fleet.Inventory{}
	}
	ix := newIndex(snap, inv)
	live := map[string]*fleet.ReleaseState{}
	ranDigest := map[string][]string{} // digest → live releases that run or last ran it healthily
	if opts.Live {
		for i := range inv.Releases {
			r := &inv.Releases[i]
			live[r.Name] = r
			if r.Digest != "" {
				ranDigest[r.Digest] = append(ranDigest[r.Digest], r.Name)
			}
			if r.LastGood != "" && r.LastGood != r.Digest {
				ranDigest[r.LastGood] = append(ranDigest[r.LastGood], r.Name)
			}
		}
	}
	c := &computer{
		ctx: ctx, snap: snap, ix: ix, opts: opts, live: live, ranDigest: ranDigest,
		mark:       make([]uint32, len(ix.targets)),
		upToDate:   make([]uint32, len(ix.targets)),
		classStamp: make([]uint32, len(ix.classes)),
		classWhy:   make([]string, len(ix.classes)),
		classCount: make([]int, len(ix.classes)),
		classNames: make([][]string, len(ix.classes)),
		runs:       make([]string, len(ix.targets)),
		runsStamp:  make([]uint32, len(ix.targets)),
		artifacts:  map[string]artifactResult{},
		datasets:   map[datasetKey]datasetResult{},
		indexes:    map[string]*indexEntry{},
		deltas:     map[deltaKey]*delta{},
	}
	p := &Plan{Base: opts.BaseRev, Live: opts.Live, Targets: len(ix.targets)}
	c.prefetch(snap)
	c.prefetchDeltas(snap)
	c.prefetchDatasets(snap)
	for _, rel := range snap.Releases() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, err := c.release(rel)
		if err != nil {
			return nil, err
		}
		p.Releases = append(p.Releases, r)
	}
	if opts.Base != nil {
		for _, b := range opts.Base.Releases() {
			if _, ok := snap.Release(b.Metadata.Name); ok {
				continue
			}
			r := Release{Name: b.Metadata.Name, Change: Removed, Model: b.Spec.Model, Kept: !b.Spec.Prunes(),
				From: modelDigest(opts.Base, b.Spec.Model), Waves: []Wave{}, Unfit: []Unfit{}, Verdicts: []policies.Verdict{}}
			p.Releases = append(p.Releases, r)
		}
		slices.SortFunc(p.Releases, func(a, b Release) int { return strings.Compare(a.Name, b.Name) })
	}
	p.summarize()
	return p, nil
}

// modelDigest is the digest the artifact of model name pins in snap, "" if none.
func modelDigest(snap *manifests.Snapshot, name string) string {
	m, ok := snap.Model(name)
	if !ok {
		return ""
	}
	_, d, err := manifests.SplitArtifact(m.Spec.Artifact)
	if err != nil {
		return ""
	}
	return d
}

type artifactResult struct {
	info *ArtifactInfo
	err  error
}

// computer holds the scratch space reused from one release to the next.
type computer struct {
	ctx       context.Context
	snap      *manifests.Snapshot
	ix        *index
	opts      Options
	live      map[string]*fleet.ReleaseState
	ranDigest map[string][]string

	gen        uint32
	mark       []uint32 // per target, for unions
	upToDate   []uint32 // per target: runs the release's digest already
	runs       []string // per target: the digest it runs of the release, if runsStamp is gen
	runsStamp  []uint32
	classStamp []uint32 // per class: classWhy and classCount are for gen
	classWhy   []string
	classCount []int
	classNames [][]string
	artifacts  map[string]artifactResult
	dsMu       sync.Mutex // datasets is filled in parallel by prefetchDatasets
	datasets   map[datasetKey]datasetResult
	deltaMu    sync.Mutex // artifacts and indexes while prefetchDeltas runs
	indexes    map[string]*indexEntry
	deltas     map[deltaKey]*delta // filled by prefetchDeltas
}

// TimeoutPolicy names the deny verdict of a release whose policies were not
// evaluated within the engine's timeout.
const TimeoutPolicy = "policy-timeout"

// inspectJobs bounds the registry requests in flight while prefetching.
const inspectJobs = 8

// prefetch inspects the artifact of every model in parallel, once each.
func (c *computer) prefetch(snap *manifests.Snapshot) {
	if c.opts.Inspector == nil {
		return
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, inspectJobs)
	)
	seen := map[string]bool{}
	for _, m := range snap.Models() {
		a := m.Spec.Artifact
		if a == "" || seen[a] {
			continue
		}
		seen[a] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			info, err := c.opts.Inspector.Inspect(c.ctx, a)
			mu.Lock()
			c.artifacts[a] = artifactResult{info: info, err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
}

func (c *computer) inspect(artifact string) artifactResult {
	if c.opts.Inspector == nil || artifact == "" {
		return artifactResult{}
	}
	if r, ok := c.artifacts[artifact]; ok {
		return r
	}
	info, err := c.opts.Inspector.Inspect(c.ctx, artifact)
	r := artifactResult{info: info, err: err}
	c.artifacts[artifact] = r
	return r
}

// release plans one release: its header (model, from → to), the targets it
// selects and those unfit, its waves, its bytes, the registry and dataset
// checks and the policy verdicts.
func (c *computer) release(rel manifests.Release) (Release, error) {
	c.gen++
	r, model, haveModel, repo := c.header(rel)
	policy, havePolicy := c.rolloutPolicy(rel, &r)
	fitIdx, fit, touched := c.fitTargets(&r, model.Spec.Requires)
	r.Waves = waves(r.Name, policy, fit)
	art := c.inspect(r.Artifact)
	c.checkArtifact(&r, art)
	c.downloads(&r, art.info, fitIdx)
	profiles := c.checkDatasets(&r, model)
	if c.opts.Policies != nil {
		in := c.input(rel, model, haveModel, repo, r.To, policy, havePolicy, art.info, r, touched)
		for i := range in.Datasets {
			in.Datasets[i].Profile = profiles[in.Datasets[i].Name]
		}
		if c.opts.OnInput != nil {
			c.opts.OnInput(in)
		}
		vs, err := c.opts.Policies.Evaluate(c.ctx, policy.Spec.Policies, in)
		if errors.Is(err, policies.ErrEvalTimeout) {
			// A policy too slow to answer denies its release, not the
			// whole plan: the others are planned, and serve keeps this
			// one's previously admitted version.
			vs, err = []policies.Verdict{{Policy: TimeoutPolicy, Result: policies.Deny,
				Message: fmt.Sprintf("the policies were not evaluated within %s (the evaluation timeout, policyTimeout): a policy is too slow", c.opts.Policies.Timeout())}}, nil
		}
		if err != nil {
			return r, err
		}
		r.Verdicts = vs
		r.Denied = policies.Denied(vs)
	}
	return r, nil
}

// header starts the plan of a release: its model, artifact, digest and the
// change from the base (or the live state).
func (c *computer) header(rel manifests.Release) (r Release, model manifests.Model, haveModel bool, repo string) {
	name := rel.Metadata.Name
	r = Release{
		Name: name, Model: rel.Spec.Model, RolloutPolicy: rel.Spec.RolloutPolicy,
		Suspended: rel.Spec.Suspend, Unfit: []Unfit{}, Verdicts: []policies.Verdict{},
	}
	for _, t := range rel.Spec.Targets {
		r.Profiles = append(r.Profiles, t.Profile)
	}
	model, haveModel = c.snap.Model(rel.Spec.Model)
	if !haveModel {
		r.Notes = append(r.Notes, fmt.Sprintf("model %s is not declared", rel.Spec.Model))
	}
	r.Version, r.Artifact = model.Spec.Version, model.Spec.Artifact
	repo, digest, err := manifests.SplitArtifact(model.Spec.Artifact)
	if err != nil && haveModel {
		r.Notes = append(r.Notes, err.Error())
		repo = strings.SplitN(model.Spec.Artifact, "@", 2)[0]
	}
	r.To = digest
	c.change(&r)
	return r, model, haveModel, repo
}

// change sets From (the base commit, else the live state), Change and the
// live rollout.
func (c *computer) change(r *Release) {
	switch {
	case c.opts.Base != nil:
		if b, ok := c.opts.Base.Release(r.Name); ok {
			r.From = modelDigest(c.opts.Base, b.Spec.Model)
		} else {
			r.Change = Added
		}
	case c.opts.Live:
		if s, ok := c.live[r.Name]; ok {
			r.From = s.Digest
		} else {
			r.Change = Added
		}
	default:
		r.Change = Added
	}
	if s, ok := c.live[r.Name]; ok {
		r.Rollout = &LiveRollout{Phase: s.Phase, Digest: s.Digest, LastGood: s.LastGood, Reason: s.Reason, Message: s.Message}
	}
	if r.Change == "" {
		r.Change = Changed
		if r.From == r.To {
			r.Change = Unchanged
		}
	}
}

// rolloutPolicy is the release's rollout policy, noted when not declared.
func (c *computer) rolloutPolicy(rel manifests.Release, r *Release) (manifests.RolloutPolicy, bool) {
	if rel.Spec.RolloutPolicy == "" {
		return manifests.RolloutPolicy{}, false
	}
	policy, ok := c.snap.RolloutPolicy(rel.Spec.RolloutPolicy)
	if !ok {
		r.Notes = append(r.Notes, fmt.Sprintf("rollout policy %s is not declared", rel.Spec.RolloutPolicy))
	}
	return policy, ok
}

// fitTargets selects the release's targets and sorts them into fit and
// unfit, per fact class, then per target; touched are the classes seen.
func (c *computer) fitTargets(r *Release, req manifests.Requirements) (fitIdx []int32, fit []string, touched []int32) {
	gen := c.gen
	sel, missing := c.ix.selection(r.Profiles, c.mark, gen)
	for _, m := range missing {
		r.Notes = append(r.Notes, fmt.Sprintf("device profile %s is not declared", m))
	}
	r.Selected = len(sel)
	fit = make([]string, 0, len(sel))
	fitIdx = make([]int32, 0, len(sel))
	for _, i := range sel {
		cl := c.ix.class[i]
		if c.classStamp[cl] != gen {
			c.classStamp[cl] = gen
			c.classWhy[cl] = unfitReason(&c.ix.classes[cl], req)
			c.classCount[cl] = 0
			c.classNames[cl] = c.classNames[cl][:0]
			touched = append(touched, cl)
		}
		c.classCount[cl]++
		t := c.ix.targets[i]
		if len(c.classNames[cl]) < policies.MaxClassNames {
			c.classNames[cl] = append(c.classNames[cl], t.Name)
		}
		if why := c.classWhy[cl]; why != "" {
			r.Unfit = append(r.Unfit, Unfit{Target: t.Name, Reason: why})
			continue
		}
		fit = append(fit, t.Name)
		fitIdx = append(fitIdx, i)
	}
	return fitIdx, fit, touched
}

// checkArtifact holds the release when the registry says its artifact is
// not there, and marks it unavailable when the registry could not be asked.
func (c *computer) checkArtifact(r *Release, art artifactResult) {
	if art.err == nil {
		return
	}
	if errors.Is(art.err, errdef.ErrNotFound) {
		r.Held = fmt.Sprintf("model artifact %s is not in its registry", r.Artifact)
		r.Notes = append(r.Notes, fmt.Sprintf("inspect %s: %v", r.Artifact, art.err))
		return
	}
	r.Unavailable = fmt.Sprintf("registry of %s unavailable: %v", r.Artifact, art.err)
	r.Notes = append(r.Notes, fmt.Sprintf("inspect %s: %v (download sizes unknown)", r.Artifact, art.err))
}

// downloads sets the model's size and the bytes every fit target must
// download (targetBytes: layers a target holds count zero, a large layer
// it lacks the chunks it lacks), in all and per wave; a target already on
// To downloads nothing.
func (c *computer) downloads(r *Release, info *ArtifactInfo, fitIdx []int32) {
	gen := c.gen
	var layers []Layer
	if info != nil {
		layers = info.Layers
		var size int64
		for _, l := range layers {
			size += l.Size
		}
		r.ModelBytes = &size
	}
	for _, run := range c.ix.running[r.Name] {
		if r.To != "" && run.digest == r.To {
			c.upToDate[run.target] = gen
		}
		c.runs[run.target], c.runsStamp[run.target] = run.digest, gen
	}
	var total, wholeTotal int64
	var fallbacks map[string]int // running digest → targets downloading from it
	for _, i := range fitIdx {
		t := c.ix.targets[i]
		if c.upToDate[i] == gen {
			r.UpToDate++
			if r.ModelBytes != nil && *r.ModelBytes != 0 {
				r.Downloads = append(r.Downloads, Download{Target: t.Name, From: r.To})
			}
			continue
		}
		if r.ModelBytes == nil {
			continue
		}
		var from string
		if c.runsStamp[i] == gen {
			from = c.runs[i]
		}
		n, whole, d := c.targetBytes(i, from, r.Artifact, layers, *r.ModelBytes)
		if d != nil && d.note != "" {
			if fallbacks == nil {
				fallbacks = map[string]int{}
			}
			fallbacks[from]++
		}
		if n != *r.ModelBytes || whole != *r.ModelBytes {
			r.Downloads = append(r.Downloads, Download{Target: t.Name, From: from, Bytes: n, WholeBytes: whole})
		}
		total += n
		wholeTotal += whole
	}
	if r.ModelBytes != nil {
		r.Bytes, r.WholeBytes = &total, &wholeTotal
		waveBytes(r)
	}
	c.deltaNotes(r, fallbacks)
}

// unfitReason says why targets with facts f cannot run a model needing req,
// "" when they can. Unknown memory is not a reason (fits-device warns).
func unfitReason(f *policies.ClassFacts, req manifests.Requirements) string {
	var why []string
	if len(req.Arch) > 0 && !slices.Contains(req.Arch, f.Arch) {
		arch := f.Arch
		if arch == "" {
			arch = "unknown"
		}
		why = append(why, fmt.Sprintf("arch %s not in requires.arch [%s]", arch, strings.Join(req.Arch, " ")))
	}
	if req.Memory.Bytes > 0 && f.Memory > 0 && f.Memory < req.Memory.Bytes {
		why = append(why, fmt.Sprintf("memory %s below requires.memory %s", formatBytes(f.Memory), req.Memory))
	}
	for _, a := range req.Accelerators {
		if !slices.Contains(f.Accelerators, a) {
			why = append(why, fmt.Sprintf("no accelerator %s", a))
		}
	}
	return strings.Join(why, "; ")
}

func (p *Plan) summarize() {
	s := Summary{Releases: len(p.Releases)}
	var bytes, whole int64
	known := true
	for i := range p.Releases {
		r := &p.Releases[i]
		switch r.Change {
		case Added:
			s.Added++
		case Changed:
			s.Changed++
		case Removed:
			s.Removed++
		default:
			s.Unchanged++
		}
		for _, w := range r.Waves {
			s.Assignments += len(w.Targets)
		}
		s.Unfit += len(r.Unfit)
		switch {
		case r.Bytes != nil:
			bytes += *r.Bytes
			whole += *r.WholeBytes
		case r.Change != Removed && r.Selected > len(r.Unfit):
			known = false // targets to update, size unknown
		}
		if r.Held != "" {
			s.Held++
		}
		if r.Denied {
			s.Denied++
			p.Denied = true
		} else if slices.ContainsFunc(r.Verdicts, func(v policies.Verdict) bool { return v.Result == policies.Warn }) {
			s.Warned++
		}
	}
	if known {
		s.Bytes, s.WholeBytes = &bytes, &whole
	}
	p.Summary = s
}

// formatBytes renders n the way manifests write memory (512Mi, 8Gi), or in
// decimal units with one decimal for sizes that are not whole binary units.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dGi", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMi", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0 && n < 1<<20:
		return fmt.Sprintf("%dKi", n>>10)
	}
	return output.BytesSI(n)
}

// shortDuration renders 30m0s as 30m and 1h0m0s as 1h.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
