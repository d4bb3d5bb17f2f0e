// Package plantest builds synthetic fleets and repositories of any size for
// the tests and benchmarks of reconciler/plan.
package plantest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// Shape of the synthetic fleet: targets have one of Hardware kinds and one of
// Regions; a DeviceProfile per (hardware, region) selects them.
const (
	Hardware = 10
	Regions  = 10
)

// Digest is a stable fake sha256 digest of s.
func Digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(h[:])
}

// Fleet returns n targets named dev-000000…: hardware hw-(i%10), region
// r-((i/10)%10), arch arm64 on even hardware and amd64 on odd, memory
// (hw%5+1) GiB except every 100th target which has 512 MiB. Every third
// target already runs, for release rel-<k> with k = i%releases, that
// release's old model digest (Digest("old-<k>")).
func Fleet(n, releases int) *fleet.Inventory {
	inv := &fleet.Inventory{Targets: make([]fleet.Target, n)}
	hw := make([]string, Hardware)
	for h := range hw {
		hw[h] = fmt.Sprintf("hw-%d", h)
	}
	rg := make([]string, Regions)
	for r := range rg {
		rg[r] = fmt.Sprintf("r-%d", r)
	}
	for i := range inv.Targets {
		h, r := i%Hardware, (i/Hardware)%Regions
		arch := "arm64"
		if h%2 == 1 {
			arch = "amd64"
		}
		mem := int64(h%5+1) << 30
		if i%100 == 99 {
			mem = 512 << 20
		}
		t := fleet.Target{
			Name:   fmt.Sprintf("dev-%06d", i),
			Labels: map[string]string{"hardware": hw[h], "region": rg[r], "env": "prod"},
			Facts:  fleet.Facts{Arch: arch, OS: "linux", Memory: mem},
		}
		if i%3 == 0 && releases > 0 {
			k := i % releases
			t.Models = map[string]string{fmt.Sprintf("rel-%04d", k): Digest(fmt.Sprintf("old-%d", k))}
		}
		inv.Targets[i] = t
	}
	return inv
}

// Repo returns a snapshot of n releases rel-0000…, each with its own model
// m-0000… (requires (k%4+1) GiB; arm64 only for every tenth), selecting the
// profile of (hardware k%10, region (k/10)%10), and every seventh also the
// next region's; all under RolloutPolicy cautious (5%, 25%, 100%) applying
// policies.
func Repo(n int, policies ...string) *manifests.Snapshot {
	objs := manifests.Objects{
		Datasets: []manifests.Dataset{
			{Kind: manifests.KindDataset, Metadata: manifests.ObjectMeta{Name: "train"}, Spec: manifests.DatasetSpec{Digest: Digest("train"), License: "MIT"}},
			{Kind: manifests.KindDataset, Metadata: manifests.ObjectMeta{Name: "holdout"}, Spec: manifests.DatasetSpec{Digest: Digest("holdout"), License: "MIT"}},
		},
		RolloutPolicies: []manifests.RolloutPolicy{{Kind: manifests.KindRolloutPolicy, Metadata: manifests.ObjectMeta{Name: "cautious"},
			Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{
				{Percent: 5, Bake: manifests.Duration{Duration: 30 * time.Minute}},
				{Percent: 25, Bake: manifests.Duration{Duration: time.Hour}},
				{Percent: 100}}, Policies: policies}}},
	}
	for h := range Hardware {
		for r := range Regions {
			objs.DeviceProfiles = append(objs.DeviceProfiles, manifests.DeviceProfile{
				Kind: manifests.KindDeviceProfile, Metadata: manifests.ObjectMeta{Name: ProfileName(h, r)},
				Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{
					MatchLabels: map[string]string{"hardware": fmt.Sprintf("hw-%d", h), "env": "prod"},
					MatchExpressions: []manifests.LabelSelectorRequirement{
						{Key: "region", Operator: manifests.OpIn, Values: []string{fmt.Sprintf("r-%d", r)}}},
				}},
			})
		}
	}
	for k := range n {
		arch := []string{"arm64", "amd64"}
		if k%10 == 0 {
			arch = []string{"arm64"}
		}
		model := fmt.Sprintf("m-%04d", k)
		objs.Models = append(objs.Models, manifests.Model{
			Kind: manifests.KindModel, Metadata: manifests.ObjectMeta{Name: model},
			Spec: manifests.ModelSpec{
				Version:     "1.0.0",
				Artifact:    "registry.example:5000/models/" + model + "@" + Digest("new-"+model),
				Format:      "onnx",
				TrainedOn:   []string{"train"},
				EvaluatedOn: []manifests.Evaluation{{Dataset: "holdout", Metrics: map[string]float64{"auc": 0.9}}},
				Requires:    manifests.Requirements{Memory: manifests.MustQuantity(fmt.Sprintf("%dGi", k%4+1)), Arch: arch},
			},
		})
		h, r := k%Hardware, (k/Hardware)%Regions
		targets := []manifests.ReleaseTarget{{Profile: ProfileName(h, r)}}
		if k%7 == 0 {
			targets = append(targets, manifests.ReleaseTarget{Profile: ProfileName(h, (r+1)%Regions)})
		}
		objs.Releases = append(objs.Releases, manifests.Release{
			Kind: manifests.KindRelease, Metadata: manifests.ObjectMeta{Name: fmt.Sprintf("rel-%04d", k)},
			Spec: manifests.ReleaseSpec{Model: model, Targets: targets, RolloutPolicy: "cautious"},
		})
	}
	return manifests.NewSnapshot(objs)
}

// ProfileName names the profile of hardware h in region r.
func ProfileName(h, r int) string { return fmt.Sprintf("hw-%d-r-%d", h, r) }
