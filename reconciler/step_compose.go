package reconciler

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// composeDesired is the compose step: every target's desired state from the
// assignments of every admitted release and the releases it keeps
// (keepAll), keeping those whose tag differs from the one stored.
// Identical assignments share one DesiredModel and identical lists one
// encoding.
func (r *Reconciler) composeDesired(_ context.Context, p *pass) error {
	lists := newModelLists(len(r.fleet.targets))
	var models []fleet.DesiredModel
	for _, name := range r.names() {
		rs := r.releases[name]
		a := rs.admitted()
		if a == nil || rs.rec.Err != nil {
			continue
		}
		index := map[rollout.Assignment]int32{}
		for t, asg := range rs.assign {
			if asg.Digest == "" && asg.Artifact == "" {
				continue
			}
			i, ok := index[asg]
			if !ok {
				i = int32(len(models))
				models = append(models, r.desiredModel(rs, asg))
				index[asg] = i
			}
			lists.add(t, i)
		}
	}
	p.changes = r.compose(models, lists, r.keepAll(), p.evalRuns)
	return nil
}

// modelLists is each target's list of indexes into a pass's models, one
// per release that assigns it one, in release order. A fleet has few
// distinct lists: each is kept once and a target holds its number, so
// that a pass over 100,000 targets makes no list of its own for each.
type modelLists struct {
	of    map[string]int32   // target → list number; none: the empty list
	lists [][]int32          // by number; 0 is the empty list
	next  map[[2]int32]int32 // (list, model index) → the list with it appended
}

func newModelLists(targets int) *modelLists {
	return &modelLists{of: make(map[string]int32, targets), lists: [][]int32{nil}, next: map[[2]int32]int32{}}
}

// add appends model index i to target's list.
func (l *modelLists) add(target string, i int32) {
	cur := l.of[target]
	n, ok := l.next[[2]int32{cur, i}]
	if !ok {
		n = int32(len(l.lists))
		l.lists = append(l.lists, append(slices.Clone(l.lists[cur]), i))
		l.next[[2]int32{cur, i}] = n
	}
	l.of[target] = n
}

func (r *Reconciler) desiredModel(rs *releaseState, asg rollout.Assignment) fleet.DesiredModel {
	a := rs.admitted()
	dm := fleet.DesiredModel{Release: a.Release.Metadata.Name, Model: a.Model.Metadata.Name, Artifact: asg.Artifact, Digest: asg.Digest,
		Rollout: rs.rec.Rollout.ID(), DownloadTimeout: a.Policy.Spec.DownloadTimeout.Duration}
	if asg.Artifact == a.Model.Spec.Artifact {
		dm.Version = a.Model.Spec.Version
	}
	if r.opts.PlainHTTP != nil {
		dm.PlainHTTP = r.opts.PlainHTTP(asg.Artifact)
	}
	rt := a.Release.Spec.Runtime
	dm.Runtime = fleet.Runtime{Path: rt.Path, Restart: rt.Restart, Stop: rt.Stop, Metrics: rt.Metrics}
	if hc := rt.HealthCheck; hc != nil {
		dm.Runtime.HealthCheck = &fleet.HealthCheck{HTTP: hc.HTTP, Exec: hc.Exec, Timeout: hc.Timeout.Duration, Retries: hc.Retries, Period: hc.Period.Duration}
	}
	dm.Kubernetes = wireKubernetes(a.Release.Spec.Kubernetes)
	if k := dm.Kubernetes; k != nil && k.Prune == nil && !a.Release.Spec.Prunes() {
		// A cluster keeps a release by its own inventory, which remembers
		// the last spec's prune (fleet/agent/kube).
		k.Prune = new(bool)
	}
	if f := a.Release.Spec.Feedback; f != nil {
		dm.Feedback = &fleet.Feedback{Sample: f.Sample, MaxPerDay: f.MaxPerDay.Bytes, Store: f.Store}
		if dm.Feedback.MaxPerDay == 0 {
			dm.Feedback.MaxPerDay = fleet.DefaultFeedbackPerDay
		}
		if dm.Feedback.Store == "" {
			dm.Feedback.Store = "default"
		}
	}
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

// compose builds each target's desired state, which keeps the releases of
// keepAll its models do not list and lists the evaluation runs asked of
// it (evals), and returns those whose tag differs from the one stored.
// Each state is its target's head and the rest of the body, one string for
// every target of the same list and no evaluation runs of its own.
func (r *Reconciler) compose(models []fleet.DesiredModel, lists *modelLists, keepAll []string, evals map[string][]fleet.EvaluationRun) []store.Desired {
	encoded := make([]*[3]string, len(lists.lists)) // by list: etag, models JSON, rest of the body
	// state is target id's tag and rest of the body.
	state := func(id string) (etag, rest string) {
		li := lists.of[id]
		enc := encoded[li]
		if enc == nil {
			etag, list := encodeDesired(models, lists.lists[li], keepAll)
			enc = &[3]string{etag, list, `"models":` + list + `}`}
			encoded[li] = enc
		}
		etag, rest = enc[0], enc[2]
		if runs := evals[id]; len(runs) > 0 {
			b, _ := json.Marshal(runs)
			etag, rest = fleetstate.ETagWith(etag, b), `"models":`+enc[1]+`,"evaluations":`+string(b)+`}`
		}
		return etag, rest
	}
	// Counted first, the changes take one slice of their size: appended
	// to, a whole fleet's would allocate five times that while growing.
	n := 0
	for _, id := range r.fleet.order {
		if etag, _ := state(id); r.fleet.written[id] != etag {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	changes := make([]store.Desired, 0, n)
	for _, id := range r.fleet.order {
		etag, rest := state(id)
		if r.fleet.written[id] == etag {
			continue
		}
		head := store.HeadOf(id, etag)
		changes = append(changes, store.Desired{Target: id, ETag: etag, Head: head, Rest: rest})
	}
	return changes
}

// encodeDesired is the entity tag and the encoding, after "models":, of a
// desired state listing models[idx] and keeping the releases of keepAll
// they do not list.
func encodeDesired(models []fleet.DesiredModel, idx []int32, keepAll []string) (etag, enc string) {
	list := make([]fleet.DesiredModel, len(idx))
	listed := make(map[string]bool, len(idx))
	for j, i := range idx {
		list[j] = models[i]
		listed[models[i].Release] = true
	}
	var keep []string
	for _, name := range keepAll {
		if !listed[name] {
			keep = append(keep, name)
		}
	}
	b, _ := json.Marshal(list) // DesiredModel holds nothing json cannot encode
	enc = string(b)
	if len(keep) > 0 {
		k, _ := json.Marshal(keep)
		enc += `,"keep":` + string(k)
	}
	return fleetstate.KeepETag(list, keep), enc
}
