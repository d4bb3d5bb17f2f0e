package rollout

import (
	"fmt"
	"slices"
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

// TestOrderMemo: a remembered order is the one computed afresh, for the
// same targets only, and what callers do to the slices they get does not
// reach it; the wave of each target by index agrees with the waves.
func TestOrderMemo(t *testing.T) {
	targets := make([]string, 500)
	for i := range targets {
		targets[i] = fmt.Sprintf("dev-%03d", i)
	}
	waves := []manifests.Wave{{Percent: 10}, {Percent: 50}, {Percent: 100}}
	fresh := func(name string, ts []string) []string {
		perm := computeOrder(name, ts)
		out := make([]string, len(perm))
		for r, i := range perm {
			out[r] = ts[i]
		}
		return out
	}
	first := RolloutOrder("memo", targets)
	if !slices.Equal(first, fresh("memo", targets)) {
		t.Fatal("first order differs from the computed one")
	}
	first[0], first[1] = "changed", "changed" // the caller's copy
	if got := RolloutOrder("memo", targets); !slices.Equal(got, fresh("memo", targets)) {
		t.Fatal("remembered order changed by a caller")
	}
	out, waveOf := assignWaves("memo", waves, targets)
	out[0][0] = "changed"
	again, _ := assignWaves("memo", waves, targets)
	if again[0][0] == "changed" {
		t.Fatal("remembered waves changed by a caller")
	}
	for w, ns := range again {
		for _, n := range ns {
			if i := slices.Index(targets, n); waveOf[i] != int32(w) {
				t.Fatalf("%s: wave %d by index, %d by waves", n, waveOf[i], w)
			}
		}
	}
	// Other targets under the same name, and the same targets reversed
	// (the order does not depend on how they are given).
	fewer := targets[:400]
	if got := RolloutOrder("memo", fewer); !slices.Equal(got, fresh("memo", fewer)) {
		t.Fatal("order of fewer targets is the remembered one")
	}
	rev := slices.Clone(targets)
	slices.Reverse(rev)
	if got := RolloutOrder("memo", rev); !slices.Equal(got, fresh("memo", targets)) {
		t.Fatal("order of the reversed targets differs")
	}
	// Two lists under one name (the engine's and the dashboard's) are both
	// kept; a third drops the older.
	orders.m = map[string][]memoOrder{}
	orders.names = 0
	RolloutOrder("memo", targets)
	RolloutOrder("memo", rev)
	if n := len(orders.m["memo"]); n != 2 {
		t.Fatalf("memo keeps %d lists of one release, want 2", n)
	}
	if perm := orders.find("memo", targets); perm == nil {
		t.Fatal("the first list was dropped by the second")
	}
	RolloutOrder("memo", fewer)
	if orders.find("memo", rev) != nil || orders.find("memo", fewer) == nil || orders.find("memo", targets) == nil {
		t.Fatal("a third list did not drop the one used longest ago")
	}
	// Many releases: past the names bound, others are dropped, and what
	// is found stays right.
	for k := range orderMemoNames/len(fewer) + 10 {
		name := fmt.Sprintf("rel-%d", k)
		if got := RolloutOrder(name, fewer); k%1000 == 0 && !slices.Equal(got, fresh(name, fewer)) {
			t.Fatalf("order of %s", name)
		}
	}
	held := 0
	for _, es := range orders.m {
		for _, e := range es {
			held += len(e.targets)
		}
	}
	if held != orders.names || held > orderMemoNames {
		t.Fatalf("memo holds %d names (counted %d), bound %d", held, orders.names, orderMemoNames)
	}
}
