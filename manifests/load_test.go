package manifests_test

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*/expected.txt from the current output")

const (
	digest   = "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
	artifact = "registry.example:5000/models/m@" + digest
)

func TestLoadGood(t *testing.T) {
	snap, err := manifests.LoadDir("testdata/good")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if got, want := snap.Summary(), "10 objects in 6 files (2 Datasets, 1 Model, 2 DeviceProfiles, 2 RolloutPolicies, 2 Releases, 1 Alert)"; got != want {
		t.Errorf("Summary() = %q, want %q", got, want)
	}
	wantFiles := []string{"manifests/alerts.yaml", "manifests/datasets.yaml", "manifests/models/bearing-anomaly.yaml", "manifests/profiles.yaml", "manifests/releases.yaml", "manifests/rollout.yaml"}
	if got := snap.Files(); strings.Join(got, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("Files() = %v, want %v", got, wantFiles)
	}

	ds := snap.Datasets()
	if ds[0].Metadata.Name != "bearing-holdout" || ds[1].Metadata.Name != "bearing-vibration" {
		t.Errorf("datasets not sorted by name: %s, %s", ds[0].Metadata.Name, ds[1].Metadata.Name)
	}
	if ds[0].Spec.Store != "default" {
		t.Errorf("default store = %q, want default", ds[0].Spec.Store)
	}
	if ds[0].Source != (manifests.Source{File: "manifests/datasets.yaml", Line: 11}) {
		t.Errorf("Source = %+v", ds[0].Source)
	}

	m, ok := snap.Model("bearing-anomaly")
	if !ok {
		t.Fatal("model bearing-anomaly missing")
	}
	if m.Spec.Requires.Memory.Bytes != 256<<20 || m.Spec.EvaluatedOn[0].Metrics["auc"] != 0.94 || len(m.Spec.Variants) != 1 {
		t.Errorf("model spec = %+v", m.Spec)
	}
	if m.Source.Line != 1 || m.Kind != manifests.KindModel {
		t.Errorf("model kind/source = %s %+v", m.Kind, m.Source)
	}

	p, _ := snap.RolloutPolicy("cautious")
	if len(p.Spec.Waves) != 3 || p.Spec.Waves[1].Bake.Duration != time.Hour || p.Spec.Window.Duration.Duration != 3*time.Hour {
		t.Errorf("policy = %+v", p.Spec)
	}
	if p.Spec.Gates[0].Max == nil || *p.Spec.Gates[0].Max != 0.01 {
		t.Errorf("gate = %+v", p.Spec.Gates[0])
	}
	fast, _ := snap.RolloutPolicy("fast")
	if fast.Spec.OnFailure != manifests.OnFailureRollback || fast.Spec.MaxUnavailable != "2" {
		t.Errorf("fast policy defaults: onFailure=%q maxUnavailable=%q", fast.Spec.OnFailure, fast.Spec.MaxUnavailable)
	}

	r, _ := snap.Release("bearing-anomaly-orin")
	if r.Spec.After.HealthyFor.Duration != 24*time.Hour || r.Spec.Runtime.HealthCheck.HTTP != "http://127.0.0.1:8080/healthz" {
		t.Errorf("release = %+v", r.Spec)
	}
	if k := r.Spec.Kubernetes; k == nil || k.Image != "ghcr.io/example/onnx-runtime:1.20" || *k.Replicas != 2 ||
		k.Resources.Limits["nvidia.com/gpu"] != "1" || k.Resources.Requests["cpu"] != "500m" || k.Env[0].Value != "2" {
		t.Errorf("release kubernetes = %+v", r.Spec.Kubernetes)
	}
	dp, _ := snap.DeviceProfile("orin-prod")
	if !dp.Spec.Selector.Matches(map[string]string{"hardware": "jetson-orin", "env": "prod", "os.version": "5.2"}) {
		t.Error("orin-prod does not match a prod Orin on 5.2")
	}
	if a, ok := snap.Alert("ops"); !ok || a.Spec.Webhook.Format != manifests.WebhookJSON || len(a.Spec.Events) != 5 {
		t.Errorf("alert = %+v", a)
	}
}

// TestBad loads every folder of testdata/bad and compares the errors with
// its expected.txt, line for line. Run with -update to rewrite them.
func TestBad(t *testing.T) {
	dirs, err := os.ReadDir("testdata/bad")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		t.Run(d.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/bad", d.Name())
			start := time.Now()
			_, err := manifests.LoadDir(dir)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Logf("slow: %v", elapsed) // reported, never asserted
			}
			var list manifests.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("LoadDir = %v, want an ErrorList", err)
			}
			got := err.Error() + "\n"
			file := filepath.Join(dir, "expected.txt")
			if *update {
				if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("errors differ\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

func TestRootRule(t *testing.T) {
	doc := func(name string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("apiVersion: cairn.dev/v1alpha1\nkind: Dataset\nmetadata: {name: " + name + "}\nspec: {digest: " + digest + "}\n")}
	}
	bad := &fstest.MapFile{Data: []byte("not: a manifest\n")}
	for _, tc := range []struct {
		name  string
		fsys  fstest.MapFS
		files []string
	}{
		{"manifests folder only", fstest.MapFS{
			"manifests/a.yaml":       doc("a"),
			"manifests/deep/b.yml":   doc("b"),
			"manifests/README.md":    bad,
			"other/c.yaml":           bad,
			"ci.yaml":                bad,
			"manifests/.hidden.yaml": bad,
			"manifests/.git/x.yaml":  bad,
		}, []string{"manifests/a.yaml", "manifests/deep/b.yml"}},
		{"whole repo without manifests folder", fstest.MapFS{
			"a.yaml":                 doc("a"),
			"team/b.yaml":            doc("b"),
			"team/policies/c.yaml":   doc("c"),
			"policies/data.yaml":     bad,
			".github/workflows.yaml": bad,
			"notes.txt":              bad,
		}, []string{"a.yaml", "team/b.yaml", "team/policies/c.yaml"}},
		{"a file named manifests is not the folder", fstest.MapFS{
			"manifests": bad,
			"a.yaml":    doc("a"),
		}, []string{"a.yaml"}},
		{"empty repository", fstest.MapFS{"README.md": bad}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := manifests.Load(tc.fsys)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := snap.Files(); strings.Join(got, ",") != strings.Join(tc.files, ",") {
				t.Errorf("Files() = %v, want %v", got, tc.files)
			}
			if snap.Len() != len(tc.files) {
				t.Errorf("Len() = %d, want %d", snap.Len(), len(tc.files))
			}
		})
	}
}

func TestLoadDirErrors(t *testing.T) {
	if _, err := manifests.LoadDir("testdata/does-not-exist"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v, want fs.ErrNotExist", err)
	}
	if _, err := manifests.LoadDir("testdata/good/manifests/alerts.yaml"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file as dir: %v", err)
	}
}

func TestSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Skipf("symlink: %v", err)
	}
	_, err := manifests.LoadDir(dir)
	if got, want := errString(err), "zero.yaml:1: a symbolic link; manifests must be regular files"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// endless is a file system with one file of the given size that never
// holds it in memory; its Stat may lie about the size.
type endless struct {
	size     int64
	statSize int64
}

func (e endless) Open(name string) (fs.File, error) {
	switch name {
	case ".":
		return &endlessDir{}, nil
	case "huge.yaml":
		return &endlessFile{r: io.LimitReader(zeros{}, e.size), size: e.statSize}, nil
	}
	return nil, fs.ErrNotExist
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

type endlessFile struct {
	r    io.Reader
	size int64
}

func (f *endlessFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *endlessFile) Close() error               { return nil }
func (f *endlessFile) Stat() (fs.FileInfo, error) { return fileInfo{"huge.yaml", f.size, 0o644}, nil }

type endlessDir struct{ done bool }

func (d *endlessDir) Read([]byte) (int, error) { return 0, io.EOF }
func (d *endlessDir) Close() error             { return nil }
func (d *endlessDir) Stat() (fs.FileInfo, error) {
	return fileInfo{".", 0, fs.ModeDir | 0o755}, nil
}
func (d *endlessDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.done {
		return nil, io.EOF
	}
	d.done = true
	return []fs.DirEntry{fs.FileInfoToDirEntry(fileInfo{"huge.yaml", 0, 0o644})}, nil
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestHostile checks that hostile input is refused with a clear error. Each
// case finishes in milliseconds; none is timed, to keep the test stable.
func TestHostile(t *testing.T) {
	const tooLarge = "huge.yaml:1: file is larger than 8 MiB; refusing to read it"
	header := "apiVersion: cairn.dev/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n  version: 1.0.0\n  artifact: " + artifact + "\n"
	for _, tc := range []struct {
		name string
		fsys fs.FS
		want string // one of the error lines
	}{
		{"100 MiB file, size known", endless{size: 100 << 20, statSize: 100 << 20}, tooLarge},
		{"100 MiB file, size unknown", endless{size: 100 << 20, statSize: 0}, tooLarge},
		{"10000 nested flow lists", yamlFS(header + "  trainedOn: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n"),
			"a.yaml:7: Model/m: nested deeper than 100 levels; refusing to decode it"},
		{"10001 nested flow lists", yamlFS(header + "  trainedOn: " + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "\n"),
			"a.yaml:7: invalid YAML: exceeded max depth of 10000"},
		{"9000 nested flow lists", yamlFS(header + "  trainedOn: " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n"),
			"a.yaml:7: Model/m: nested deeper than 100 levels; refusing to decode it"},
		{"10000 nested block lists", yamlFS(header + "  trainedOn:\n  " + strings.Repeat("- ", 10000) + "x\n"),
			"a.yaml:7: invalid YAML: exceeded max depth of 10000"},
		{"101 nested mappings", yamlFS(header + "  requires: " + strings.Repeat("{a: ", 101) + "x" + strings.Repeat("}", 101) + "\n"),
			"a.yaml:7: Model/m: nested deeper than 100 levels; refusing to decode it"},
		{"a million-item list", yamlFS(header + "  trainedOn: [" + strings.Repeat("d,", 1_000_000) + "]\n"),
			"a.yaml:7: more than 200000 YAML nodes in one file; refusing to parse it"},
		{"alias fan-out", yamlFS(header + "  evaluatedOn:\n    - &e {dataset: d, metrics: {" + metrics(2000) + "}}\n" + strings.Repeat("    - *e\n", 2000)),
			"a.yaml:8: Model/m: spec.evaluatedOn[99].metrics.m1692: document expands to more than 200000 nodes through aliases; refusing to decode it"},
		{"alias cycle", yamlFS(header + "  trainedOn: &a [*a]\n"),
			"a.yaml:7: Model/m: spec.trainedOn[0]: want a string, got a list"},
		{"a hundred thousand wrong values", yamlFS(header + "  trainedOn: [" + strings.Repeat("1,", 100_000) + "]\n"),
			"a.yaml:7: Model/m: spec.trainedOn[0]: want a string, got integer 1; quote it to make it a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := manifests.Load(tc.fsys)
			var list manifests.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Load = %v, want an ErrorList", err)
			}
			if !strings.Contains(list.Error()+"\n", tc.want+"\n") {
				t.Errorf("errors:\n%v\nwant among them:\n%s", list, tc.want)
			}
			if len(list) > 60 {
				t.Errorf("%d errors, want the list bounded", len(list))
			}
		})
	}
}

func yamlFS(s string) fs.FS { return fstest.MapFS{"a.yaml": {Data: []byte(s)}} }

func metrics(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("m" + itoa(i) + ": 1")
	}
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestErrorString(t *testing.T) {
	for _, tc := range []struct {
		err  manifests.Error
		want string
	}{
		{manifests.Error{File: "a.yaml", Line: 3, Kind: "Release", Name: "r", Field: "spec.model", Message: `Model "m" not found`}, `a.yaml:3: Release/r: spec.model: Model "m" not found`},
		{manifests.Error{File: "a.yaml", Line: 3, Field: "metadata.name", Message: "required"}, "a.yaml:3: metadata.name: required"},
		{manifests.Error{File: "a.yaml", Line: 3, Kind: "Model", Field: "metadata.name", Message: "required"}, "a.yaml:3: Model: metadata.name: required"},
		{manifests.Error{File: "x/b.yml", Line: 1, Message: "invalid YAML: oops"}, "x/b.yml:1: invalid YAML: oops"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	list := manifests.ErrorList{{File: "b.yaml", Line: 1, Message: "x"}, {File: "a.yaml", Line: 9, Message: "y"}, {File: "a.yaml", Line: 2, Message: "z"}}
	list.Sort()
	if got, want := list.Error(), "a.yaml:2: z\na.yaml:9: y\nb.yaml:1: x"; got != want {
		t.Errorf("sorted list = %q, want %q", got, want)
	}
	var e *manifests.Error
	if !errors.As(error(list), &e) || e.File != "a.yaml" {
		t.Errorf("errors.As(list, *Error) = %v", e)
	}
}

func TestValidateInMemory(t *testing.T) {
	objs := manifests.Objects{
		Models: []manifests.Model{{Kind: manifests.KindModel, Metadata: manifests.ObjectMeta{Name: "m"},
			Spec: manifests.ModelSpec{Version: "1", Artifact: artifact, TrainedOn: []string{"d"}}, Source: manifests.Source{File: "m.yaml", Line: 1}}},
		Datasets: []manifests.Dataset{{Kind: manifests.KindDataset, Metadata: manifests.ObjectMeta{Name: "d"}, Spec: manifests.DatasetSpec{Digest: digest}}},
	}
	snap, err := manifests.Validate(objs)
	if err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if d, _ := snap.Dataset("d"); d.Spec.Store != "default" {
		t.Errorf("store default not applied: %q", d.Spec.Store)
	}
	objs.Datasets = nil
	_, err = manifests.Validate(objs)
	if got, want := errString(err), `m.yaml:1: Model/m: spec.trainedOn[0]: Dataset "d" not found`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestSnapshotImmutable(t *testing.T) {
	snap, err := manifests.LoadDir("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	ms := snap.Models()
	ms[0].Metadata.Name = "changed"
	ms[0].Spec.TrainedOn[0] = "changed"
	ms[0].Spec.EvaluatedOn[0].Metrics["auc"] = 0
	if m := snap.Models(); m[0].Metadata.Name != "bearing-anomaly" || m[0].Spec.TrainedOn[0] != "bearing-vibration" || m[0].Spec.EvaluatedOn[0].Metrics["auc"] != 0.94 {
		t.Errorf("Models() exposes the snapshot's data: %+v", m[0])
	}
	p, _ := snap.RolloutPolicy("cautious")
	*p.Spec.Gates[0].Max = 1
	p.Spec.Window.TimeZone = "UTC"
	if p, _ := snap.RolloutPolicy("cautious"); *p.Spec.Gates[0].Max != 0.01 || p.Spec.Window.TimeZone != "device" {
		t.Errorf("RolloutPolicy() exposes the snapshot's data: %+v", p.Spec)
	}
}

// TestManyObjects checks that a large but honest file is not mistaken for a
// hostile one: dashes inside names are not nodes.
func TestManyObjects(t *testing.T) {
	var b strings.Builder
	for i := range 5000 {
		b.WriteString("---\napiVersion: cairn.dev/v1alpha1\nkind: Dataset\nmetadata:\n  name: a-very-long-dataset-name-with-many-dashes-" + itoa(i) + "\n  labels: {team: vision-edge-platform-x, split: train-2026-11}\nspec:\n  digest: " + digest + "\n  format: csv\n")
	}
	snap, err := manifests.Load(yamlFS(b.String()))
	if err != nil {
		t.Fatalf("Load: %.300v", err)
	}
	if snap.Len() != 5000 {
		t.Errorf("Len() = %d, want 5000", snap.Len())
	}
}
