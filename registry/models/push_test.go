package models

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

var sampleModel = map[string]string{
	"model.onnx":            strings.Repeat("w", 5000),
	"config.json":           `{"hidden": 4}`,
	"tokenizer.json":        `{}`,
	"README.md":             "# model\n",
	"LICENSE":               "MIT",
	"src/train.py":          "print('hi')\n",
	"data/holdout.csv":      "a,b\n1,2\n",
	"weights/part-1.bin":    "",
	"weights/sub/part2.bin": "x",
}

func TestPushPullRoundTrip(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, sampleModel)
	res, err := Push(bg, reg+"/models/sample:1.0", []string{src}, PushOptions{
		Name: "sample", Version: "1.0",
		TrainedOn: map[string]string{"ds": "sha256:" + strings.Repeat("a", 64)},
		Source:    "https://git.example/m", Revision: "abc123",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.Ref, reg+"/models/sample@sha256:") || !strings.HasSuffix(res.Ref, res.Digest) {
		t.Errorf("ref %s", res.Ref)
	}

	a, err := Inspect(bg, res.Ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind != KindModelPack || a.ArtifactType != ArtifactTypeModelManifest || a.ConfigMediaType != MediaTypeModelConfig {
		t.Errorf("inspect: %+v", a)
	}
	if a.Size != res.Size {
		t.Errorf("size %d, push said %d", a.Size, res.Size)
	}
	wantMT := map[string]string{
		"model.onnx": MediaTypeModelWeightRaw, "config.json": MediaTypeModelWeightConfigRaw,
		"tokenizer.json": MediaTypeModelWeightConfigRaw, "README.md": MediaTypeModelDocRaw,
		"LICENSE": MediaTypeModelDocRaw, "src/train.py": MediaTypeModelCodeRaw,
		"data/holdout.csv": MediaTypeModelDatasetRaw, "weights/part-1.bin": MediaTypeModelWeightRaw,
		"weights/sub/part2.bin": MediaTypeModelWeightRaw,
	}
	for _, l := range a.Layers {
		if wantMT[l.Path] != l.MediaType {
			t.Errorf("%s: media type %s, want %s", l.Path, l.MediaType, wantMT[l.Path])
		}
		if l.Annotations[AnnotationFilepath] != l.Path {
			t.Errorf("%s: filepath annotation %q", l.Path, l.Annotations[AnnotationFilepath])
		}
	}
	if a.Annotations[AnnotationTrainedOn] != `{"ds":"sha256:`+strings.Repeat("a", 64)+`"}` ||
		a.Annotations["org.opencontainers.image.revision"] != "abc123" {
		t.Errorf("annotations %v", a.Annotations)
	}
	var cfg ModelConfig
	if err := json.Unmarshal(a.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Descriptor.Name != "sample" || cfg.Config.Format != "onnx" || cfg.ModelFS.Type != "layers" || len(cfg.ModelFS.DiffIDs) != len(sampleModel) {
		t.Errorf("config %s", a.Config)
	}

	for _, cache := range []string{"", t.TempDir()} {
		out := t.TempDir()
		pr, err := Pull(bg, res.Ref, out, PullOptions{CacheDir: cache})
		if err != nil {
			t.Fatal(err)
		}
		if pr.Digest != res.Digest || pr.Kind != KindModelPack || len(pr.Files) != len(sampleModel) {
			t.Errorf("pull result %+v", pr)
		}
		equalTrees(t, readTree(t, out), sampleModel)
	}

	// The same push again gives the same digest (fixed createdAt).
	res2, err := Push(bg, reg+"/models/sample:again", []string{src}, PushOptions{
		Name: "sample", Version: "1.0",
		TrainedOn: map[string]string{"ds": "sha256:" + strings.Repeat("a", 64)},
		Source:    "https://git.example/m", Revision: "abc123",
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Digest != res.Digest {
		t.Errorf("second push %s, first %s", res2.Digest, res.Digest)
	}
}

// TestPullConcurrentSharedCache: pulls into several folders at once through
// one cache (agent slots) all get the model.
func TestPullConcurrentSharedCache(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, sampleModel)
	res, err := Push(bg, reg+"/shared/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		dirs[i] = t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Pull(bg, res.Ref, dirs[i], PullOptions{CacheDir: cache})
		}()
	}
	wg.Wait()
	for i, d := range dirs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		equalTrees(t, readTree(t, d), sampleModel)
	}
}
