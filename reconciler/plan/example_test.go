package plan_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
)

func ExampleCompute() {
	snap := manifests.NewSnapshot(manifests.Objects{
		Models: []manifests.Model{{Metadata: manifests.ObjectMeta{Name: "m"}, Spec: manifests.ModelSpec{
			Artifact: "registry.example:5000/m@sha256:" + strings.Repeat("a", 64),
			Requires: manifests.Requirements{Memory: manifests.MustQuantity("1Gi")},
		}}},
		DeviceProfiles: []manifests.DeviceProfile{{Metadata: manifests.ObjectMeta{Name: "prod"},
			Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
		RolloutPolicies: []manifests.RolloutPolicy{{Metadata: manifests.ObjectMeta{Name: "halves"},
			Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{{Percent: 50}, {Percent: 100}}, Policies: []string{"fits-device"}}}},
		Releases: []manifests.Release{{Metadata: manifests.ObjectMeta{Name: "m-prod"},
			Spec: manifests.ReleaseSpec{Model: "m", Targets: []manifests.ReleaseTarget{{Profile: "prod"}}, RolloutPolicy: "halves"}}},
	})
	inv := &fleet.Inventory{}
	for i, mem := range []int64{4 << 30, 4 << 30, 4 << 30, 4 << 30, 512 << 20} {
		inv.Targets = append(inv.Targets, fleet.Target{Name: fmt.Sprintf("dev-%d", i),
			Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "arm64", Memory: mem}})
	}
	eng, _ := policies.Compile(context.Background(), nil)
	p, err := plan.Compute(context.Background(), snap, inv, plan.Options{Policies: eng})
	if err != nil {
		panic(err)
	}
	r := p.Releases[0]
	for i, w := range r.Waves {
		fmt.Printf("wave %d (%d%%): %s\n", i+1, w.Percent, strings.Join(w.Targets, " "))
	}
	for _, u := range r.Unfit {
		fmt.Printf("unfit %s: %s\n", u.Target, u.Reason)
	}
	for _, v := range r.Verdicts {
		fmt.Printf("%s %s: %s\n", v.Policy, v.Result, v.Message)
	}
	fmt.Println("denied:", p.Denied)
	// Output:
	// wave 1 (50%): dev-2 dev-1
	// wave 2 (100%): dev-3 dev-0
	// unfit dev-4: memory 512Mi below requires.memory 1Gi
	// fits-device deny: target dev-4: memory 512Mi is below the model's requires.memory 1Gi
	// denied: true
}
