package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"

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
	type keyed struct {
		key  uint64
		name string
	}
	ks := make([]keyed, len(targets))
	// waveKey without a concatenation per target: the same bytes hashed.
	buf := make([]byte, 0, len(release)+1+64)
	buf = append(append(buf, release...), 0)
	prefix := len(buf)
	for i, t := range targets {
		buf = append(buf[:prefix], t...)
		h := sha256.Sum256(buf)
		ks[i] = keyed{binary.BigEndian.Uint64(h[:8]), t}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if a.key != b.key {
			if a.key < b.key {
				return -1
			}
			return 1
		}
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.name
	}
	return out
}

// AssignWaves splits targets into the waves of a rollout policy. Wave i holds
// the targets whose rank in RolloutOrder falls in
// [ceil(n·p[i-1]/100), ceil(n·p[i]/100)), where p are the waves' cumulative
// percents; a policy with no waves is one wave of 100%. The result has one
// entry per wave, possibly empty. Plan and the rollout engine both call it,
// so a target lands in the same wave in both.
func AssignWaves(release string, waves []manifests.Wave, targets []string) [][]string {
	if len(waves) == 0 {
		waves = []manifests.Wave{{Percent: 100}}
	}
	order := RolloutOrder(release, targets)
	n := len(order)
	out := make([][]string, len(waves))
	prev := 0
	for i, w := range waves {
		p := min(max(w.Percent, 0), 100)
		if i == len(waves)-1 {
			p = 100
		}
		end := (n*p + 99) / 100
		end = max(end, prev)
		out[i] = order[prev:end:end]
		prev = end
	}
	return out
}
