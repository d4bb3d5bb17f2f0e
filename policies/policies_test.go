package policies

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/cairn-dev/cairn/manifests"
)

// TestBuiltinLibrary runs the Rego unit tests of the embedded library.
func TestBuiltinLibrary(t *testing.T) {
	var out bytes.Buffer
	sum, err := Test(context.Background(), nil, TestOptions{Output: &out, Builtins: true, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK() || sum.Passed == 0 {
		t.Fatalf("built-in policy tests: %+v\n%s", sum, out.String())
	}
	// Every built-in policy has both an allow and a deny test.
	for _, name := range Builtins() {
		pkg := "data.cairn." + strings.ReplaceAll(name, "-", "_") + "_test"
		s := out.String()
		if !strings.Contains(s, pkg) {
			t.Errorf("no tests for built-in %s", name)
		}
	}
}

func TestBuiltins(t *testing.T) {
	got := strings.Join(Builtins(), ",")
	want := "allowed-registries,dataset-license,digest-pinned,evaluation,fits-device,promotion,require-evaluation"
	if got != want {
		t.Fatalf("Builtins() = %s, want %s", got, want)
	}
}

const pinned = "registry.example:5000/models/a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestEvaluate(t *testing.T) {
	repo := fstest.MapFS{
		"friday.rego": {Data: []byte(`package cairn.no_friday
deny contains "no deploys named friday" if input.release.name == "friday"
warn contains {"msg": "big fleet"} if input.targets.count > 100
`)},
		"friday_test.rego": {Data: []byte(`package cairn.no_friday_test
import data.cairn.no_friday
test_friday if { count(no_friday.deny) == 1 with input as {"release": {"name": "friday"}, "targets": {"count": 1}} }
`)},
		"data.yaml": {Data: []byte("allowed_registries: [registry.example:5000]\n")},
		"lib.rego":  {Data: []byte("package cairn.lib\nbig(n) if n > 100\n")},
	}
	e, err := Compile(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.RepoPolicies(); len(got) != 1 || got[0] != "no-friday" {
		t.Fatalf("repo policies = %v", got)
	}
	in := func(release, artifact string, memory int64, count int) *Input {
		return &Input{
			Release: ReleaseInput{Name: release},
			Model: ModelInput{Name: "a", Artifact: artifact, Spec: manifests.ModelSpec{Artifact: artifact},
				Requires: Requirements{Memory: "1Gi", MemoryBytes: 1 << 30, Arch: []string{"arm64"}}},
			Targets: TargetsInput{Count: count, Classes: []TargetClass{{
				Facts: ClassFacts{Arch: "arm64", Memory: memory}, Count: count, Names: []string{"dev-1"}}}},
		}
	}
	tests := []struct {
		name     string
		builtins []string
		in       *Input
		want     []Verdict
	}{
		{"all allow", []string{"digest-pinned", "allowed-registries", "fits-device"}, in("r", pinned, 4<<30, 1), []Verdict{
			{"digest-pinned", Allow, ""}, {"allowed-registries", Allow, ""}, {"fits-device", Allow, ""}, {"no-friday", Allow, ""}}},
		{"too small", []string{"fits-device"}, in("r", pinned, 512<<20, 1), []Verdict{
			{"fits-device", Deny, "target dev-1: memory 512Mi is below the model's requires.memory 1Gi"}, {"no-friday", Allow, ""}}},
		{"repo deny and structured warn", nil, in("friday", pinned, 4<<30, 200), []Verdict{
			{"no-friday", Deny, "no deploys named friday"}, {"no-friday", Warn, "big fleet"}}},
		{"unknown builtin denies", []string{"fits-devices"}, in("r", pinned, 4<<30, 1), []Verdict{
			{"fits-devices", Deny, `no built-in policy "fits-devices" (have allowed-registries, dataset-license, digest-pinned, evaluation, fits-device, promotion, require-evaluation)`}, {"no-friday", Allow, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.Evaluate(context.Background(), tt.builtins, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("verdicts = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("verdict %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}

	sum, err := Test(context.Background(), repo, TestOptions{})
	if err != nil || sum.Passed != 1 || !sum.OK() {
		t.Fatalf("repo tests: %+v, %v", sum, err)
	}
}

func TestCompileErrors(t *testing.T) {
	for name, repo := range map[string]fstest.MapFS{
		"syntax":       {"a.rego": {Data: []byte("package cairn.x\ndeny contains if {")}},
		"builtin name": {"a.rego": {Data: []byte("package cairn.fits_device\ndeny contains \"x\" if true\n")}},
		"dup data":     {"a.json": {Data: []byte(`{"k": 1}`)}, "b.yaml": {Data: []byte("k: 2\n")}},
		"bad data":     {"a.json": {Data: []byte(`[1]`)}},
	} {
		if _, err := Compile(context.Background(), repo); err == nil {
			t.Errorf("%s: Compile succeeded", name)
		}
	}
}
