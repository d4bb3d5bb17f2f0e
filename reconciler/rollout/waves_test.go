package rollout

import (
	"fmt"
	"testing"

	"github.com/cairn-dev/cairn/manifests"
)

func TestAssignWavesStableAndComplete(t *testing.T) {
	waves := []manifests.Wave{{Percent: 5}, {Percent: 25}, {Percent: 100}}
	var targets []string
	for i := range 200 {
		targets = append(targets, fmt.Sprintf("dev-%03d", i))
	}
	a := AssignWaves("r", waves, targets)
	// Reversed input gives the same assignment.
	rev := make([]string, len(targets))
	for i, t := range targets {
		rev[len(targets)-1-i] = t
	}
	b := AssignWaves("r", waves, rev)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("assignment depends on input order")
	}
	if got := []int{len(a[0]), len(a[1]), len(a[2])}; fmt.Sprint(got) != "[10 40 150]" {
		t.Fatalf("wave sizes = %v", got)
	}
	seen := map[string]bool{}
	for _, w := range a {
		for _, x := range w {
			if seen[x] {
				t.Fatalf("%s in two waves", x)
			}
			seen[x] = true
		}
	}
	if len(seen) != len(targets) {
		t.Fatalf("%d of %d targets assigned", len(seen), len(targets))
	}
}

func TestAssignWavesSmallFleet(t *testing.T) {
	a := AssignWaves("r", []manifests.Wave{{Percent: 5}, {Percent: 100}}, []string{"a", "b", "c"})
	if len(a[0]) != 1 || len(a[1]) != 2 {
		t.Fatalf("waves = %v, want 1 then 2", a)
	}
}

// TestRolloutOrderUsesWaveKey: the order is by waveKey, the documented key.
func TestRolloutOrderUsesWaveKey(t *testing.T) {
	targets := []string{"a", "b", "c", "device-0042", "x/y", ""}
	order := RolloutOrder("rel", targets)
	for i := 1; i < len(order); i++ {
		if waveKey("rel", order[i-1]) > waveKey("rel", order[i]) {
			t.Fatalf("order %v not sorted by waveKey", order)
		}
	}
}
