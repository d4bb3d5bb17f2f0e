package plan_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
)

// TestClustersPlannedLikeDevices: cluster targets (facts kind: cluster,
// from `cairn agent --driver kube`) are selected by their labels and facts
// and checked by fits-device like devices.
func TestClustersPlannedLikeDevices(t *testing.T) {
	snap := manifests.NewSnapshot(manifests.Objects{
		Models: []manifests.Model{{Metadata: manifests.ObjectMeta{Name: "llm"}, Spec: manifests.ModelSpec{
			Artifact: "registry.example:5000/llm@sha256:" + strings.Repeat("b", 64),
			Requires: manifests.Requirements{Memory: manifests.MustQuantity("16Gi"), Accelerators: []string{"nvidia-gpu"}},
		}}},
		DeviceProfiles: []manifests.DeviceProfile{{Metadata: manifests.ObjectMeta{Name: "clusters"},
			Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{MatchLabels: map[string]string{"kind": "cluster", "env": "prod"}}}}},
		RolloutPolicies: []manifests.RolloutPolicy{{Metadata: manifests.ObjectMeta{Name: "all"},
			Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{{Percent: 100}}, Policies: []string{"fits-device"}}}},
		Releases: []manifests.Release{{Metadata: manifests.ObjectMeta{Name: "llm"},
			Spec: manifests.ReleaseSpec{Model: "llm", Targets: []manifests.ReleaseTarget{{Profile: "clusters"}}, RolloutPolicy: "all"}}},
	})
	prod := map[string]string{"env": "prod"}
	inv := &fleet.Inventory{Targets: []fleet.Target{
		{Name: "gpu-cluster", Labels: prod, Facts: fleet.Facts{Kind: fleet.KindCluster, KubernetesVersion: "v1.37.2", Nodes: 3,
			Arch: "amd64", Architectures: []string{"amd64"}, Memory: 64 << 30, Accelerators: []string{"nvidia-gpu"},
			GPUs: map[string]int64{"nvidia.com/gpu": 8}, KServe: true}},
		{Name: "cpu-cluster", Labels: prod, Facts: fleet.Facts{Kind: fleet.KindCluster, KubernetesVersion: "v1.37.2", Nodes: 5,
			Architectures: []string{"amd64", "arm64"}, Memory: 32 << 30}},
		{Name: "dev-0", Labels: prod, Facts: fleet.Facts{Arch: "arm64", Memory: 64 << 30, Accelerators: []string{"nvidia-gpu"}}},
	}}
	eng, err := policies.Compile(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Compute(context.Background(), snap, inv, plan.Options{Policies: eng})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Releases[0]
	if r.Selected != 2 || len(r.Unfit) != 1 || r.Unfit[0].Target != "cpu-cluster" || !strings.Contains(r.Unfit[0].Reason, "no accelerator nvidia-gpu") {
		t.Fatalf("selected %d, unfit %+v; want both clusters selected (not the device) and cpu-cluster unfit", r.Selected, r.Unfit)
	}
	if len(r.Waves) != 1 || strings.Join(r.Waves[0].Targets, ",") != "gpu-cluster" {
		t.Errorf("waves %+v, want gpu-cluster only", r.Waves)
	}
	denied := false
	for _, v := range r.Verdicts {
		if v.Policy == "fits-device" && v.Result == "deny" && strings.Contains(v.Message, "cpu-cluster") {
			denied = true
		}
	}
	if !denied || !p.Denied {
		t.Errorf("fits-device verdicts %+v: want a deny naming cpu-cluster", r.Verdicts)
	}
}
