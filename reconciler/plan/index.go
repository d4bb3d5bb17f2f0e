package plan

import (
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
)

// index is the inventory prepared once per plan: targets in name order,
// each target's fact class (what model requirements are checked against) and
// each profile's targets. Selectors are evaluated once per distinct
// combination of the label values they look at, not once per target, so
// 100,000 targets with a few hundred distinct label sets cost a few hundred
// selector matches.
type index struct {
	targets  []*fleet.Target       // sorted by name
	class    []int32               // per target: index into classes
	classes  []policies.ClassFacts // distinct fact classes
	profiles map[string][]int32    // profile name → its targets, ascending
	// running maps release name → the targets reporting a model for it.
	running map[string][]running
}

// running is one target's current model digest for a release.
type running struct {
	target int32
	digest string
}

func newIndex(snap *manifests.Snapshot, inv *fleet.Inventory) *index {
	ix := &index{profiles: map[string][]int32{}}
	if inv != nil {
		ix.targets = make([]*fleet.Target, len(inv.Targets))
		for i := range inv.Targets {
			ix.targets[i] = &inv.Targets[i]
		}
	}
	slices.SortFunc(ix.targets, func(a, b *fleet.Target) int { return strings.Compare(a.Name, b.Name) })
	ix.buildClasses()
	ix.running = map[string][]running{}
	for i, t := range ix.targets {
		for rel, d := range t.Models {
			ix.running[rel] = append(ix.running[rel], running{int32(i), d})
		}
	}

	profiles := snap.DeviceProfiles()
	// The label keys any selector looks at.
	keySet := map[string]bool{}
	for _, p := range profiles {
		for k := range p.Spec.Selector.MatchLabels {
			keySet[k] = true
		}
		for _, e := range p.Spec.Selector.MatchExpressions {
			keySet[e.Key] = true
		}
	}
	keys := make([]string, 0, len(keySet))
	for k := range keySet {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	// Group targets by the values of those keys.
	groupOf := make([]int32, len(ix.targets))
	groups := map[string]int32{}
	var reps []int32 // a representative target per group
	var buf []byte
	for i, t := range ix.targets {
		buf = buf[:0]
		for _, k := range keys {
			if v, ok := selectorLabel(t, k); ok {
				buf = append(buf, 1)
				buf = append(buf, v...)
			}
			buf = append(buf, 0)
		}
		g, ok := groups[string(buf)]
		if !ok {
			g = int32(len(reps))
			groups[string(buf)] = g
			reps = append(reps, int32(i))
		}
		groupOf[i] = g
	}
	// Which profiles each group matches: the selector's own Matches on the
	// representative's selector labels.
	matches := make([][]int32, len(reps))
	for g, r := range reps {
		labels := ix.targets[r].SelectorLabels()
		for p := range profiles {
			if profiles[p].Spec.Selector.Matches(labels) {
				matches[g] = append(matches[g], int32(p))
			}
		}
	}
	lists := make([][]int32, len(profiles))
	for i, g := range groupOf {
		for _, p := range matches[g] {
			lists[p] = append(lists[p], int32(i))
		}
	}
	for p := range profiles {
		ix.profiles[profiles[p].Metadata.Name] = lists[p]
	}
	return ix
}

// buildClasses interns each target's requirement-relevant facts.
func (ix *index) buildClasses() {
	ix.class = make([]int32, len(ix.targets))
	seen := map[string]int32{}
	var buf []byte
	for i, t := range ix.targets {
		f := &t.Facts
		buf = append(buf[:0], f.Arch...)
		buf = append(buf, 0)
		buf = append(buf, f.OS...)
		buf = append(buf, 0)
		buf = append(buf, f.OSVersion...)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, f.Memory, 10)
		for _, a := range f.Accelerators {
			buf = append(buf, 0)
			buf = append(buf, a...)
		}
		c, ok := seen[string(buf)]
		if !ok {
			c = int32(len(ix.classes))
			seen[string(buf)] = c
			ix.classes = append(ix.classes, policies.ClassFacts{
				Arch: f.Arch, OS: f.OS, OSVersion: f.OSVersion, Memory: f.Memory,
				Accelerators: slices.Clone(f.Accelerators),
			})
		}
		ix.class[i] = c
	}
}

// selectorLabel is t.SelectorLabels()[key] without building the map: facts
// (see fleet.Facts.Labels) over labels.
func selectorLabel(t *fleet.Target, key string) (string, bool) {
	f := &t.Facts
	v := ""
	switch key {
	case "arch":
		v = f.Arch
	case "os":
		v = f.OS
	case "os.version":
		v = f.OSVersion
	case "kernel":
		v = f.Kernel
	case "hostname":
		v = f.Hostname
	case "cpus":
		if f.CPUs > 0 {
			v = strconv.Itoa(f.CPUs)
		}
	case "memory":
		if f.Memory > 0 {
			v = strconv.FormatInt(f.Memory, 10)
		}
	case "accelerator":
		if len(f.Accelerators) > 0 {
			v = f.Accelerators[0]
		}
	case "kind":
		v = f.Kind
	case "kubernetes.version":
		v = f.KubernetesVersion
	case "nodes":
		if f.Kind == fleet.KindCluster {
			v = strconv.Itoa(f.Nodes)
		}
	case "kserve":
		if f.Kind == fleet.KindCluster {
			v = strconv.FormatBool(f.KServe)
		}
	}
	if v != "" {
		return v, true
	}
	v, ok := t.Labels[key]
	return v, ok
}

// selection returns the targets of a release's profiles, ascending, and the
// names of profiles the snapshot does not declare. scratch is reused.
func (ix *index) selection(profiles []string, mark []uint32, gen uint32) (sel []int32, missing []string) {
	var lists [][]int32
	for _, p := range profiles {
		l, ok := ix.profiles[p]
		if !ok {
			missing = append(missing, p)
			continue
		}
		lists = append(lists, l)
	}
	switch len(lists) {
	case 0:
		return nil, missing
	case 1:
		return lists[0], missing
	}
	n := 0
	for _, l := range lists {
		n += len(l)
	}
	sel = make([]int32, 0, n)
	for _, l := range lists {
		for _, i := range l {
			if mark[i] != gen {
				mark[i] = gen
				sel = append(sel, i)
			}
		}
	}
	slices.Sort(sel)
	return sel, missing
}
