package models

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestPullInterop(t *testing.T) {
	reg := newRegistry(t, nil)
	weights := []byte("0123456789weights")
	files := map[string]string{"model.onnx": string(weights), "tokenizer/vocab.json": `{"a":1}`, "README.md": "hi"}
	tarEntries := []tarEntry{
		{name: "tokenizer/", typ: '5'},
		{name: "tokenizer/vocab.json", body: files["tokenizer/vocab.json"]},
	}
	kitfile := []byte(`{"manifestVersion":"1.0.0","package":{"name":"demo"},"model":{"name":"m","path":"models/model.onnx"}}`)

	cases := []struct {
		name         string
		artifactType string
		configMT     string
		config       []byte
		layers       []testLayer
		kind         string
		want         map[string]string
	}{
		{
			name:     "oras ModelPack without artifactType, title annotations only",
			configMT: MediaTypeModelConfig, config: modelPackConfig(sha(weights)),
			layers: []testLayer{
				{mt: MediaTypeModelWeightRaw, data: weights, ann: map[string]string{"org.opencontainers.image.title": "model.onnx"}},
				{mt: MediaTypeModelDocRaw, data: []byte("hi"), ann: map[string]string{"org.opencontainers.image.title": "README.md"}},
			},
			kind: KindModelPack, want: map[string]string{"model.onnx": files["model.onnx"], "README.md": "hi"},
		},
		{
			name:         "oras with an empty config and artifactType",
			artifactType: ArtifactTypeModelManifest, configMT: "application/vnd.oci.empty.v1+json", config: []byte("{}"),
			layers: []testLayer{{mt: MediaTypeModelWeightRaw, data: weights, ann: map[string]string{AnnotationFilepath: "model.onnx"}}},
			kind:   KindModelPack, want: map[string]string{"model.onnx": files["model.onnx"]},
		},
		{
			name:         "modctl tar layers (plain, gzip, zstd)",
			artifactType: ArtifactTypeModelManifest, configMT: MediaTypeModelConfig, config: modelPackConfig("sha256:x"),
			layers: []testLayer{
				{mt: "application/vnd.cncf.model.weight.v1.tar", data: mkTar(t, []tarEntry{{name: "model.onnx", body: files["model.onnx"]}}, ""),
					ann: map[string]string{AnnotationFilepath: "model.onnx"}},
				{mt: "application/vnd.cncf.model.weight.config.v1.tar+gzip", data: mkTar(t, tarEntries, "gzip"),
					ann: map[string]string{AnnotationFilepath: "tokenizer/vocab.json"}},
				{mt: "application/vnd.cncf.model.doc.v1.tar+zstd", data: mkTar(t, []tarEntry{{name: "README.md", body: "hi"}}, "zstd")},
			},
			kind: KindModelPack, want: files,
		},
		{
			name:     "ModelPack layers only (config and artifactType dropped)",
			configMT: "application/vnd.oci.empty.v1+json", config: []byte("{}"),
			layers: []testLayer{{mt: MediaTypeModelWeightRaw, data: weights, ann: map[string]string{AnnotationFilepath: "model.onnx"}}},
			kind:   KindModelPack, want: map[string]string{"model.onnx": files["model.onnx"]},
		},
		{
			name:     "KitOps ModelKit",
			configMT: MediaTypeKitOpsConfig, config: kitfile,
			layers: []testLayer{
				{mt: "application/vnd.kitops.modelkit.model.v1.tar+gzip", data: mkTar(t, []tarEntry{{name: "models/", typ: '5'}, {name: "models/model.onnx", body: string(weights)}}, "gzip")},
				{mt: "application/vnd.kitops.modelkit.code.v1.tar+gzip", data: mkTar(t, []tarEntry{{name: "src/serve.py", body: "print(1)"}}, "gzip")},
				{mt: "application/vnd.kitops.modelkit.dataset.v1.tar", data: mkTar(t, []tarEntry{{name: "data/train.csv", body: "a\n1\n"}}, "")},
				{mt: "application/vnd.kitops.modelkit.docs.v1.tar+gzip", data: mkTar(t, []tarEntry{{name: "README.md", body: "kit"}}, "gzip")},
			},
			kind: KindKitOps,
			want: map[string]string{"models/model.onnx": string(weights), "src/serve.py": "print(1)", "data/train.csv": "a\n1\n", "README.md": "kit"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := pushArtifact(t, reg+"/interop/case:"+string(rune('a'+i)), tc.artifactType, tc.configMT, tc.config, tc.layers, nil)
			a, err := Inspect(bg, ref, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if a.Kind != tc.kind {
				t.Errorf("kind %s, want %s", a.Kind, tc.kind)
			}
			out := t.TempDir()
			res, err := Pull(bg, ref, out, PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != tc.kind {
				t.Errorf("pull kind %s", res.Kind)
			}
			equalTrees(t, readTree(t, out), tc.want)
			for _, f := range res.Files {
				if f.Digest != sha([]byte(tc.want[f.Path])) {
					t.Errorf("%s: digest %s", f.Path, f.Digest)
				}
			}
		})
	}
}

func TestPullNotModel(t *testing.T) {
	reg := newRegistry(t, nil)
	img, _ := random.Image(100, 1)
	tag, _ := name.NewTag(reg + "/img/random:1")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	_, err := Pull(bg, tag.String(), t.TempDir(), PullOptions{})
	if !errors.Is(err, ErrNotModel) {
		t.Fatalf("got %v, want ErrNotModel", err)
	}
	a, err := Inspect(bg, tag.String(), Options{})
	if err != nil || a.Kind != KindUnknown {
		t.Fatalf("inspect: %v %+v", err, a)
	}
}

func TestPullIndexPlatform(t *testing.T) {
	reg := newRegistry(t, nil)
	arm := pushArtifact(t, reg+"/idx/m:arm", ArtifactTypeModelManifest, MediaTypeModelConfig, modelPackConfig(sha([]byte("int8"))),
		[]testLayer{{mt: MediaTypeModelWeightRaw, data: []byte("int8"), ann: map[string]string{AnnotationFilepath: "model.onnx"}}}, nil)
	amd := pushArtifact(t, reg+"/idx/m:amd", ArtifactTypeModelManifest, MediaTypeModelConfig, modelPackConfig(sha([]byte("fp16"))),
		[]testLayer{{mt: MediaTypeModelWeightRaw, data: []byte("fp16"), ann: map[string]string{AnnotationFilepath: "model.onnx"}}}, nil)
	desc := func(ref string, arch string) v1.Descriptor {
		r, _ := name.NewDigest(ref)
		d, err := remote.Head(r)
		if err != nil {
			t.Fatal(err)
		}
		return v1.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, Platform: &v1.Platform{OS: "linux", Architecture: arch}}
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{desc(arm, "arm64"), desc(amd, "amd64")}}
	b, _ := json.Marshal(idx)
	tag, _ := name.NewTag(reg + "/idx/m:all")
	if err := remote.Put(tag, rawManifest{b, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
	for arch, want := range map[string]string{"arm64": "int8", "amd64": "fp16"} {
		out := t.TempDir()
		if _, err := Pull(bg, tag.String(), out, PullOptions{Options: Options{Platform: "linux/" + arch}}); err != nil {
			t.Fatal(err)
		}
		equalTrees(t, readTree(t, out), map[string]string{"model.onnx": want})
	}
	if _, err := Pull(bg, tag.String(), t.TempDir(), PullOptions{Options: Options{Platform: "linux/riscv64"}}); err == nil {
		t.Error("pull of a platform the index lacks succeeded")
	}
}
