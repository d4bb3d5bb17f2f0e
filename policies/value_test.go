package policies

import (
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/cairn-dev/cairn/manifests"
)

// TestToValueMatchesJSON: the fast conversion gives what the JSON round trip gives.
func TestToValueMatchesJSON(t *testing.T) {
	size := int64(42)
	in := &Input{
		Release: ReleaseInput{Name: "r", Labels: map[string]string{"a": "b"}, Spec: manifests.ReleaseSpec{
			Model: "m", Targets: []manifests.ReleaseTarget{{Profile: "p"}},
			After: &manifests.Promotion{Release: "s", HealthyFor: manifests.Duration{Duration: 24 * time.Hour}}}},
		Model: ModelInput{Name: "m", Spec: manifests.ModelSpec{Requires: manifests.Requirements{Memory: manifests.MustQuantity("1Gi")},
			EvaluatedOn: []manifests.Evaluation{{Dataset: "d", Metrics: map[string]float64{"auc": 0.94, "n": 3}}}}, Size: &size},
		Datasets: []DatasetInput{{Name: "d", Roles: []string{"trainedOn"}, Profile: map[string]any{"rows": 10, "x": []any{1.5, "s", nil}}}},
		Targets:  TargetsInput{Count: 1, Classes: []TargetClass{{Facts: ClassFacts{Arch: "arm64", Memory: 1 << 30}, Count: 1, Names: []string{"x"}}}},
		Lineage:  LineageInput{Available: true, Releases: map[string]ReleaseState{"s": {Digest: "sha256:00", HealthySinceNs: 7}}},
		NowNs:    123,
	}
	want, err := ast.InterfaceToValue(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := toValue(in)
	if err != nil {
		t.Fatal(err)
	}
	if ast.Compare(got, want) != 0 {
		t.Fatalf("toValue:\n%v\nInterfaceToValue:\n%v", got, want)
	}
}
