package plan

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeRegistry answers Inspect with two layers per artifact: a shared
// runtime layer (sha256:dddd…, 40 MB) and a weights layer of 10 MB of its
// own (sha256:eeee…<the artifact's first 4 hex>).
var fakeRegistry = InspectorFunc(func(_ context.Context, ref string) (*ArtifactInfo, error) {
	_, d, err := manifests.SplitArtifact(ref)
	if err != nil {
		return nil, err
	}
	return &ArtifactInfo{Digest: d, Layers: []Layer{
		{Digest: "sha256:" + strings.Repeat("d", 64), Size: 40_000_000, MediaType: "application/vnd.cncf.model.weight.config.v1.raw"},
		{Digest: fakeWeights(d), Size: 10_000_000, MediaType: "application/vnd.cncf.model.weight.v1.raw"},
	}}, nil
})

func fakeWeights(artifact string) string {
	return "sha256:" + strings.Repeat("e", 60) + strings.TrimPrefix(artifact, "sha256:")[:4]
}

// fakeIndexes gives the weights layers of sha256:aaaa… and sha256:bbbb…
// chunk indexes of ten 1 MB chunks, the same but for chunks 4 and 5: an
// update from aaaa to bbbb moves 2 MB of its 10. Other artifacts have none.
var fakeIndexes = ChunkIndexerFunc(func(_ context.Context, ref string) (map[string][]Chunk, error) {
	_, d, err := manifests.SplitArtifact(ref)
	if err != nil {
		return nil, err
	}
	if d != "sha256:"+strings.Repeat("a", 64) && d != "sha256:"+strings.Repeat("b", 64) {
		return nil, nil
	}
	var chunks []Chunk
	for i := range 10 {
		c := fmt.Sprintf("sha256:%063x%d", 0, i)
		if (i == 4 || i == 5) && d[7] == 'b' {
			c = fmt.Sprintf("sha256:%063x%d", 1, i)
		}
		chunks = append(chunks, Chunk{Digest: c, Size: 1_000_000})
	}
	return map[string][]Chunk{fakeWeights(d): chunks}, nil
})

func loadRepo(t *testing.T, name string) (*manifests.Snapshot, *policies.Engine) {
	t.Helper()
	dir := filepath.Join("testdata", "repos", name)
	snap, err := manifests.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pol = os.DirFS(filepath.Join(dir, "policies"))
	if _, err := os.Stat(filepath.Join(dir, "policies")); err != nil {
		pol = nil
	}
	eng, err := policies.Compile(context.Background(), pol)
	if err != nil {
		t.Fatal(err)
	}
	return snap, eng
}

func readInv(t *testing.T, path string) *fleet.Inventory {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inv, err := ReadInventory(f)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", name, got)
	}
}

func TestGolden(t *testing.T) {
	base, _ := loadRepo(t, "fleet-base")
	tests := []struct {
		name string
		repo string
		inv  string
		opts Options
	}{
		{"fleet", "fleet", "testdata/repos/fleet/inventory.yaml", Options{Base: base, BaseRev: "a1b2c3d (merge base with main)", Inspector: fakeRegistry, ChunkIndexes: fakeIndexes}},
		{"fleet-no-registry", "fleet", "testdata/repos/fleet/inventory.yaml", Options{}},
		{"fleet-base", "fleet-base", "", Options{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap, eng := loadRepo(t, tt.repo)
			var inv *fleet.Inventory
			if tt.inv != "" {
				inv = readInv(t, tt.inv)
			}
			tt.opts.Policies, tt.opts.Now = eng, now
			p, err := Compute(context.Background(), snap, inv, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var md bytes.Buffer
			if err := p.WriteMarkdown(&md); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".md", md.Bytes())
			js, err := json.MarshalIndent(p, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".json", append(js, '\n'))
		})
	}
}

// TestTooSmallDenied: a release selecting a device too small for its model is
// denied by fits-device, and the device and the reason are in the plan.
func TestTooSmallDenied(t *testing.T) {
	snap, eng := loadRepo(t, "fleet")
	inv := readInv(t, "testdata/repos/fleet/inventory.yaml")
	p, err := Compute(context.Background(), snap, inv, Options{Policies: eng, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Denied {
		t.Fatal("plan not denied")
	}
	var r *Release
	for i := range p.Releases {
		if p.Releases[i].Name == "pump-classifier-edge" {
			r = &p.Releases[i]
		}
	}
	if r == nil || !r.Denied {
		t.Fatalf("pump-classifier-edge not denied: %+v", r)
	}
	found := false
	for _, v := range r.Verdicts {
		if v.Policy == "fits-device" && v.Result == policies.Deny && strings.Contains(v.Message, "pi-04") && strings.Contains(v.Message, "192Mi") {
			found = true
		}
	}
	if !found {
		t.Errorf("no fits-device deny naming pi-04: %+v", r.Verdicts)
	}
	if len(r.Unfit) != 1 || r.Unfit[0].Target != "pi-04" || !strings.Contains(r.Unfit[0].Reason, "memory 192Mi below requires.memory 256Mi") {
		t.Errorf("unfit = %+v", r.Unfit)
	}
	for _, w := range r.Waves {
		for _, n := range w.Targets {
			if n == "pi-04" {
				t.Error("unfit target pi-04 is in a wave")
			}
		}
	}
}

func TestDiff(t *testing.T) {
	base, _ := loadRepo(t, "fleet-base")
	head, _ := loadRepo(t, "fleet")
	got := Diff(base, head)
	want := []ReleaseChange{
		{"bearing-anomaly-orin", Changed, "sha256:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("b", 64)},
		{"old-detector", Removed, "sha256:" + strings.Repeat("a", 64), ""},
		{"pump-classifier-edge", Added, "", "sha256:" + strings.Repeat("c", 64)},
	}
	if len(got) != len(want) {
		t.Fatalf("Diff = %+v", got)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("change %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if d := Diff(nil, head); len(d) != 2 || d[0].Change != Added {
		t.Errorf("Diff(nil) = %+v", d)
	}
}

// TestWavesMatchAssignWaves: the plan's waves are exactly AssignWaves over
// the fit targets, the function the rollout engine calls.
func TestWavesMatchAssignWaves(t *testing.T) {
	snap, _ := loadRepo(t, "fleet")
	inv := readInv(t, "testdata/repos/fleet/inventory.yaml")
	p, err := Compute(context.Background(), snap, inv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := snap.RolloutPolicy("cautious")
	for _, r := range p.Releases {
		var fit []string
		for _, w := range r.Waves {
			fit = append(fit, w.Targets...)
		}
		want := rollout.AssignWaves(r.Name, pol.Spec.Waves, fit)
		for i := range want {
			if strings.Join(want[i], ",") != strings.Join(r.Waves[i].Targets, ",") {
				t.Errorf("%s wave %d = %v, want %v", r.Name, i, r.Waves[i].Targets, want[i])
			}
		}
	}
}

func TestSelectorLabelMatchesFacts(t *testing.T) {
	tg := fleet.Target{Name: "x", Labels: map[string]string{"arch": "label-arch", "env": "prod", "memory": "1"},
		Facts: fleet.Facts{Arch: "arm64", OSVersion: "5.1", CPUs: 4, Memory: 1 << 30, Accelerators: []string{"gpu", "npu"}}}
	cluster := fleet.Target{Name: "c", Labels: map[string]string{"env": "prod"},
		Facts: fleet.Facts{Kind: fleet.KindCluster, KubernetesVersion: "v1.37.2", Nodes: 3, Arch: "amd64", Memory: 64 << 30,
			Accelerators: []string{"nvidia-gpu"}, GPUs: map[string]int64{"nvidia.com/gpu": 4}}}
	for _, tg := range []fleet.Target{tg, cluster} {
		want := tg.SelectorLabels()
		for _, k := range []string{"arch", "os", "os.version", "kernel", "hostname", "cpus", "memory", "accelerator", "env", "nope",
			"kind", "kubernetes.version", "nodes", "kserve"} {
			v, ok := selectorLabel(&tg, k)
			w, wok := want[k]
			if v != w || ok != wok {
				t.Errorf("%s: selectorLabel(%s) = %q,%v; SelectorLabels has %q,%v", tg.Name, k, v, ok, w, wok)
			}
		}
	}
	if l := cluster.SelectorLabels(); l["kind"] != "cluster" || l["nodes"] != "3" || l["kserve"] != "false" || l["kubernetes.version"] != "v1.37.2" {
		t.Errorf("cluster selector labels = %v", l)
	}
}

func TestReadInventory(t *testing.T) {
	tests := []struct {
		name, in string
		n        int
		mem      int64
		wantErr  bool
	}{
		{"yaml list", "- {name: a, facts: {memory: 4Gi}}\n- {name: b}\n", 2, 4 << 30, false},
		{"json list", `[{"name": "a", "facts": {"memory": 1024}}]`, 1, 1024, false},
		{"server object", `{"targets": [{"name": "a", "facts": {"memory": "1Ki"}}], "releases": [{"name": "r", "digest": "sha256:00"}]}`, 1, 1024, false},
		{"empty", "", 0, 0, false},
		{"unknown field", "- {name: a, color: red}\n", 0, 0, true},
		{"bad memory", "- {name: a, facts: {memory: lots}}\n", 0, 0, true},
		{"duplicate", "- {name: a}\n- {name: a}\n", 0, 0, true},
		{"no name", "- {labels: {a: b}}\n", 0, 0, true},
		{"scalar", "42\n", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ReadInventory(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if len(inv.Targets) != tt.n {
				t.Fatalf("%d targets, want %d", len(inv.Targets), tt.n)
			}
			if tt.n > 0 && inv.Targets[0].Facts.Memory != tt.mem {
				t.Errorf("memory = %d, want %d", inv.Targets[0].Facts.Memory, tt.mem)
			}
		})
	}
}

func FuzzReadInventory(f *testing.F) {
	f.Add([]byte("- {name: a, labels: {x: y}, facts: {arch: arm64, memory: 4Gi, accelerators: [gpu]}, models: {r: sha256:00}}\n"))
	f.Add([]byte(`{"targets": [{"name": "a"}]}`))
	f.Add([]byte(`[{"name": "a", "facts": {"memory": 12}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := ReadInventory(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, tg := range inv.Targets {
			if tg.Name == "" {
				t.Fatal("target without a name accepted")
			}
		}
	})
}

// TestInputDocument keeps an example of the policy input document (the one
// policies/README.md shows) as a golden file, with live lineage facts.
func TestInputDocument(t *testing.T) {
	snap, eng := loadRepo(t, "fleet")
	inv := readInv(t, "testdata/repos/fleet/inventory.yaml")
	since := now.Add(-36 * time.Hour)
	inv.Releases = []fleet.ReleaseState{{Name: "pump-classifier-edge", Digest: "sha256:" + strings.Repeat("9", 64), Phase: "Succeeded", HealthySince: &since}}
	var got *policies.Input
	_, err := Compute(context.Background(), snap, inv, Options{Policies: eng, Inspector: fakeRegistry, Now: now, Live: true,
		OnInput: func(in *policies.Input) {
			if in.Release.Name == "pump-classifier-edge" {
				got = in
			}
		}})
	if err != nil || got == nil {
		t.Fatalf("no input: %v", err)
	}
	js, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "input-pump-classifier-edge.json", append(js, '\n'))
}

func TestDesired(t *testing.T) {
	snap, _ := loadRepo(t, "fleet")
	inv := readInv(t, "testdata/repos/fleet/inventory.yaml")
	p, err := Compute(context.Background(), snap, inv, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := p.Desired()
	b, c := "sha256:"+strings.Repeat("b", 64), "sha256:"+strings.Repeat("c", 64)
	if got := d["orin-01"]; len(got) != 2 || got["bearing-anomaly-orin"] != b || got["pump-classifier-edge"] != c {
		t.Errorf("orin-01 = %v", got)
	}
	if got := d["pi-01"]; len(got) != 1 || got["pump-classifier-edge"] != c {
		t.Errorf("pi-01 = %v", got)
	}
	if _, ok := d["pi-04"]; ok {
		t.Error("unfit pi-04 has a desired state")
	}
	if _, ok := d["lab-01"]; ok {
		t.Error("unselected lab-01 has a desired state")
	}
}

// A removed release's section says whether its targets uninstall it or,
// with prune: false in the base, keep it (the golden plan shows the latter).
func TestRemovedSection(t *testing.T) {
	for _, tt := range []struct {
		kept bool
		want string
	}{
		{false, "Removed: targets stop running `m` `sha256:aaaaaaaaaaaa`."},
		{true, "Removed with `prune: false`: targets keep running `m` `sha256:aaaaaaaaaaaa`, no longer managed."},
	} {
		r := Release{Name: "r", Change: Removed, Model: "m", From: "sha256:" + strings.Repeat("a", 64), Kept: tt.kept}
		var b strings.Builder
		r.writeSection(&b)
		if !strings.Contains(b.String(), tt.want) {
			t.Errorf("kept=%v: section\n%s\nwant %q", tt.kept, b.String(), tt.want)
		}
	}
}
