package gitops

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
)

func TestExampleRepoValidates(t *testing.T) {
	snap, err := manifests.LoadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(snap.Releases()); got != 2 {
		t.Errorf("%d releases, want staging and prod", got)
	}
	if got := len(snap.DeviceProfiles()); got < 2 {
		t.Errorf("%d device profiles, want two kinds of device", got)
	}
}

func TestExamplePoliciesPassTheirTests(t *testing.T) {
	var out bytes.Buffer
	sum, err := policies.Test(context.Background(), os.DirFS("policies"), policies.TestOptions{Output: &out, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.Passed == 0 {
		t.Fatalf("policy tests: %+v\n%s", sum, out.String())
	}
	e, err := policies.Compile(context.Background(), os.DirFS("policies"))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.RepoPolicies(); len(got) != 1 || got[0] != "release-owner" {
		t.Errorf("repository policies %v, want [release-owner]", got)
	}
}

func TestExampleInventoryReads(t *testing.T) {
	f, err := os.Open("inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inv, err := plan.ReadInventory(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Targets) != 6 {
		t.Fatalf("%d targets, want 6", len(inv.Targets))
	}
	snap, err := manifests.LoadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	// Every device is selected by exactly one release.
	for _, tg := range inv.Targets {
		n := 0
		for _, r := range snap.Releases() {
			for _, rt := range r.Spec.Targets {
				p, _ := snap.DeviceProfile(rt.Profile)
				if p.Spec.Selector.Matches(tg.SelectorLabels()) {
					n++
				}
			}
		}
		if n != 1 {
			t.Errorf("%s is selected %d times, want once", tg.Name, n)
		}
	}
}

func TestExamplePlanAllowsEveryRelease(t *testing.T) {
	f, err := os.Open("inventory.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inv, err := plan.ReadInventory(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.ForDir(context.Background(), ".", plan.DirOptions{NoBase: true, Inventory: inv})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Releases) != 2 {
		t.Fatalf("%d releases planned, want 2", len(p.Releases))
	}
	for _, r := range p.Releases {
		if r.Denied || len(r.Unfit) > 0 {
			t.Errorf("%s: denied %v, unfit %v, verdicts %v", r.Name, r.Denied, r.Unfit, r.Verdicts)
		}
		if r.Selected == 0 {
			t.Errorf("%s selects no target of the inventory", r.Name)
		}
	}
}
