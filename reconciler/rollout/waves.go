package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/cairn-dev/cairn/manifests"
)

// waveKey is a target's stable place in the rollout order of a release: the
// same on every run, in `cairn plan` and in the rollout engine.
func waveKey(release, target string) uint64 {
	h := sha256.Sum256([]byte(release + "\x00" + target))
	return binary.BigEndian.Uint64(h[:8])
}

// RolloutOrder returns targets in the order a release reaches them.
func RolloutOrder(release string, targets []string) []string {
	return inOrder(targets, orderOf(release, targets))
}

// inOrder is targets in the order perm gives (orderOf).
func inOrder(targets []string, perm []int32) []string {
	out := make([]string, len(perm))
	for r, i := range perm {
		out[r] = targets[i]
	}
	return out
}

// orders keeps the last rollout orders computed for each release: a pass
// steps every release over the same targets as the pass before, and plan
// over those of the pass, so the hashing and sorting of a fleet's names
// (about 0.05 s at 100,000 targets) is done once per change of the fleet.
// Two lists a release are kept, the engine's and another caller's (the
// dashboard lists targets in its own order), so neither evicts the other.
var orders = orderMemo{m: map[string][]memoOrder{}}

// orderMemoLists is how many lists of targets a release keeps.
const orderMemoLists = 2

// orderMemoNames bounds the target names the memo holds in all (a copy of
// each list's headers and its order: about 20 bytes a name): past it,
// releases are dropped, any of them, until the new list fits.
const orderMemoNames = 2_000_000

type orderMemo struct {
	mu    sync.Mutex
	m     map[string][]memoOrder // newest first
	names int                    // held in all
}

// memoOrder is one order: targets as they were given and the rollout order
// as indexes into them. Neither is handed out: callers get copies.
type memoOrder struct {
	targets []string
	perm    []int32
}

// orderOf returns the rollout order of targets as indexes into targets:
// perm[r] is the target of rank r. The result is the caller's.
func orderOf(release string, targets []string) []int32 {
	if perm := orders.find(release, targets); perm != nil {
		return perm
	}
	perm := computeOrder(release, targets)
	orders.keep(release, targets, perm)
	return perm
}

// find returns a copy of the remembered order of targets, nil when none.
func (o *orderMemo) find(release string, targets []string) []int32 {
	o.mu.Lock()
	defer o.mu.Unlock()
	es := o.m[release]
	for i, e := range es {
		if slices.Equal(e.targets, targets) {
			if i > 0 { // the newest first
				es[0], es[i] = es[i], es[0]
			}
			return slices.Clone(e.perm)
		}
	}
	return nil
}

// keep remembers perm as the order of targets.
func (o *orderMemo) keep(release string, targets []string, perm []int32) {
	if len(targets) == 0 || len(targets) > orderMemoNames {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	es := o.m[release]
	for _, e := range es {
		if slices.Equal(e.targets, targets) {
			return // kept meanwhile by another caller
		}
	}
	if len(es) >= orderMemoLists {
		o.names -= len(es[len(es)-1].targets)
		es = es[:len(es)-1]
	}
	for name, other := range o.m {
		if o.names+len(targets) <= orderMemoNames {
			break
		}
		if name == release {
			continue
		}
		for _, e := range other {
			o.names -= len(e.targets)
		}
		delete(o.m, name)
	}
	o.m[release] = append([]memoOrder{{targets: slices.Clone(targets), perm: slices.Clone(perm)}}, es...)
	o.names += len(targets)
}

// computeOrder sorts targets by waveKey, then by name.
func computeOrder(release string, targets []string) []int32 {
	type keyed struct {
		key uint64
		i   int32
	}
	ks := make([]keyed, len(targets))
	// waveKey without a concatenation per target: the same bytes hashed.
	buf := make([]byte, 0, len(release)+1+64)
	buf = append(append(buf, release...), 0)
	prefix := len(buf)
	for i, t := range targets {
		buf = append(buf[:prefix], t...)
		h := sha256.Sum256(buf)
		ks[i] = keyed{binary.BigEndian.Uint64(h[:8]), int32(i)}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		if targets[a.i] < targets[b.i] {
			return -1
		}
		if targets[a.i] > targets[b.i] {
			return 1
		}
		return 0
	})
	perm := make([]int32, len(ks))
	for r, k := range ks {
		perm[r] = k.i
	}
	return perm
}

// AssignWaves splits targets into the waves of a rollout policy. Wave i holds
// the targets whose rank in RolloutOrder falls in
// [ceil(n·p[i-1]/100), ceil(n·p[i]/100)), where p are the waves' cumulative
// percents; a policy with no waves is one wave of 100%. The result has one
// entry per wave, possibly empty. Plan and the rollout engine both call it,
// so a target lands in the same wave in both.
func AssignWaves(release string, waves []manifests.Wave, targets []string) [][]string {
	out, _ := assignWaves(release, waves, targets)
	return out
}

// assignWaves is AssignWaves, and the wave of each of targets by its index.
func assignWaves(release string, waves []manifests.Wave, targets []string) ([][]string, []int32) {
	if len(waves) == 0 {
		waves = []manifests.Wave{{Percent: 100}}
	}
	perm := orderOf(release, targets)
	order := inOrder(targets, perm)
	waveOf := make([]int32, len(targets))
	n := len(order)
	out := make([][]string, len(waves))
	prev := 0
	for w, wave := range waves {
		p := min(max(wave.Percent, 0), 100)
		if w == len(waves)-1 {
			p = 100
		}
		end := (n*p + 99) / 100
		end = max(end, prev)
		out[w] = order[prev:end:end]
		for _, i := range perm[prev:end] {
			waveOf[i] = int32(w)
		}
		prev = end
	}
	return out, waveOf
}
