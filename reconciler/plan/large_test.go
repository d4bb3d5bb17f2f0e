package plan

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan/plantest"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

// TestLargeFleet plans 1,000 releases over 100,000 targets and checks sampled
// releases against a brute-force evaluation (every target's selector labels
// against every profile), and fits-device's Rego verdict against the Go fit
// check for every release.
func TestLargeFleet(t *testing.T) {
	targets, releases := 100_000, 1000
	if testing.Short() {
		targets, releases = 10_000, 100
	}
	inv := plantest.Fleet(targets, releases)
	snap := plantest.Repo(releases, "digest-pinned", "require-evaluation", "fits-device")
	eng, err := policies.Compile(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const layer = 1000
	insp := InspectorFunc(func(_ context.Context, ref string) (*ArtifactInfo, error) {
		return &ArtifactInfo{Layers: []Layer{{Digest: plantest.Digest(ref), Size: layer}}}, nil
	})
	start := time.Now()
	p, err := Compute(context.Background(), snap, inv, Options{Policies: eng, Inspector: insp, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("plan of %d releases × %d targets: %v, %d assignments, %d unfit", releases, targets, time.Since(start), p.Summary.Assignments, p.Summary.Unfit)

	var md strings.Builder
	if err := p.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if md.Len() > 65536 {
		t.Errorf("markdown plan is %d bytes, more than a GitHub comment holds", md.Len())
	}
	if len(p.Releases) != releases {
		t.Fatalf("%d releases planned", len(p.Releases))
	}
	total := 0
	for _, r := range p.Releases {
		total += r.assigned()
		fitsDenied := slices.ContainsFunc(r.Verdicts, func(v policies.Verdict) bool {
			return v.Policy == "fits-device" && v.Result == policies.Deny
		})
		if fitsDenied != (len(r.Unfit) > 0) {
			t.Errorf("%s: fits-device denied=%v but %d unfit targets", r.Name, fitsDenied, len(r.Unfit))
		}
		if r.Denied != fitsDenied {
			t.Errorf("%s: denied=%v, verdicts %+v", r.Name, r.Denied, r.Verdicts)
		}
	}
	if total != p.Summary.Assignments {
		t.Errorf("summary assignments %d, releases sum to %d", p.Summary.Assignments, total)
	}

	labels := make([]map[string]string, len(inv.Targets))
	for i, tg := range inv.Targets {
		labels[i] = tg.SelectorLabels()
	}
	for _, k := range []int{0, 7, 13, releases / 2, releases - 1} {
		name := fmt.Sprintf("rel-%04d", k)
		rel, _ := snap.Release(name)
		model, _ := snap.Model(rel.Spec.Model)
		var fit, unfit []string
		var profs []manifests.DeviceProfile
		for _, rt := range rel.Spec.Targets {
			prof, _ := snap.DeviceProfile(rt.Profile)
			profs = append(profs, prof)
		}
		for i, tg := range inv.Targets {
			selected := false
			for _, prof := range profs {
				selected = selected || prof.Spec.Selector.Matches(labels[i])
			}
			if !selected {
				continue
			}
			if fits(tg, model.Spec.Requires) {
				fit = append(fit, tg.Name)
			} else {
				unfit = append(unfit, tg.Name)
			}
		}
		slices.Sort(fit)
		slices.Sort(unfit)
		var r *Release
		for i := range p.Releases {
			if p.Releases[i].Name == name {
				r = &p.Releases[i]
			}
		}
		pol, _ := snap.RolloutPolicy("cautious")
		want := rollout.AssignWaves(name, pol.Spec.Waves, fit)
		for i := range want {
			if strings.Join(want[i], ",") != strings.Join(r.Waves[i].Targets, ",") {
				t.Errorf("%s wave %d: %d targets, want %d", name, i, len(r.Waves[i].Targets), len(want[i]))
			}
		}
		var gotUnfit []string
		for _, u := range r.Unfit {
			gotUnfit = append(gotUnfit, u.Target)
		}
		if strings.Join(gotUnfit, ",") != strings.Join(unfit, ",") {
			t.Errorf("%s: unfit %d targets, want %d", name, len(gotUnfit), len(unfit))
		}
		if r.Selected != len(fit)+len(unfit) || r.Bytes == nil || *r.Bytes != int64(len(fit))*layer {
			t.Errorf("%s: selected %d bytes %v, want %d and %d", name, r.Selected, r.Bytes, len(fit)+len(unfit), len(fit)*layer)
		}
	}
}

func fits(t fleet.Target, req manifests.Requirements) bool {
	if len(req.Arch) > 0 && !slices.Contains(req.Arch, t.Facts.Arch) {
		return false
	}
	return !(req.Memory.Bytes > 0 && t.Facts.Memory > 0 && t.Facts.Memory < req.Memory.Bytes)
}

// BenchmarkCompute is the plan of 1,000 releases × 100,000 targets with the
// digest-pinned, require-evaluation and fits-device policies (bench/plan).
func BenchmarkCompute(b *testing.B) {
	inv := plantest.Fleet(100_000, 1000)
	snap := plantest.Repo(1000, "digest-pinned", "require-evaluation", "fits-device")
	eng, err := policies.Compile(context.Background(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Compute(context.Background(), snap, inv, Options{Policies: eng, Now: now}); err != nil {
			b.Fatal(err)
		}
	}
}
