package models

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestPushVariants(t *testing.T) {
	reg := newRegistry(t, nil)
	push := func(platform, content string) *PushResult {
		t.Helper()
		src := writeTree(t, map[string]string{"model.onnx": content})
		res, err := Push(bg, reg+"/variants/m:1", []string{src}, PushOptions{Options: Options{Platform: platform}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	push("linux/arm64", "int8 old")
	push("linux/amd64", "fp32")
	push("linux/amd64+cuda", "fp16")
	last := push("linux/arm64", "int8") // replaces the first arm64 variant
	if last.Manifest == "" || last.Manifest == last.Digest {
		t.Errorf("result %+v: want the index digest and the manifest digest", last)
	}
	for platform, want := range map[string]string{
		"linux/arm64": "int8", "linux/arm64/v8": "", "linux/amd64": "fp32", "linux/amd64+cuda": "fp16", "linux/arm64+cuda": "int8",
	} {
		out := t.TempDir()
		pr, err := Pull(bg, last.Ref, out, PullOptions{Options: Options{Platform: platform}})
		if want == "" {
			if err == nil {
				t.Errorf("%s: pulled a variant the index lacks", platform)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		equalTrees(t, readTree(t, out), map[string]string{"model.onnx": want})
		if pr.Index != last.Digest {
			t.Errorf("%s: index %s, want %s", platform, pr.Index, last.Digest)
		}
	}
	// Each variant is also a plain manifest at TAG-platform.
	if last.PlatformTag != "1-linux-arm64" {
		t.Errorf("platform tag %q", last.PlatformTag)
	}
	for tag, want := range map[string]string{"1-linux-arm64": "int8", "1-linux-amd64": "fp32", "1-linux-amd64-cuda": "fp16"} {
		out := t.TempDir()
		pr, err := Pull(bg, reg+"/variants/m:"+tag, out, PullOptions{})
		if err != nil {
			t.Fatalf("%s: %v", tag, err)
		}
		equalTrees(t, readTree(t, out), map[string]string{"model.onnx": want})
		if pr.Index != "" {
			t.Errorf("%s: pulled through an index", tag)
		}
	}
	a, err := Inspect(bg, last.Ref, Options{Platform: "linux/amd64+cuda"})
	if err != nil || a.Digest == last.Digest || a.Kind != KindModelPack || a.Index != last.Digest || len(a.Variants) != 3 {
		t.Fatalf("inspect variant: %v %+v", err, a)
	}
	for i, want := range []string{"linux/amd64", "linux/amd64+cuda", "linux/arm64"} {
		if a.Variants[i].Platform != want {
			t.Errorf("variant %d: %s, want %s", i, a.Variants[i].Platform, want)
		}
	}
}

func TestChoosePlatform(t *testing.T) {
	d := func(hex byte, p string) v1.Descriptor {
		pl, err := parsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		return v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: string(rune(hex))}, Platform: pl}
	}
	idx := &v1.IndexManifest{Manifests: []v1.Descriptor{d('a', "linux/arm64/v8"), d('b', "linux/amd64+cuda"), d('c', "linux/amd64")}}
	for _, tc := range []struct{ want, got string }{
		{"linux/arm64", "a"}, {"linux/arm64/v8", "a"}, {"linux/arm64/v7", ""},
		{"linux/amd64", "c"}, {"linux/amd64+cuda", "b"}, {"linux/amd64+rocm", "c"}, {"windows/amd64", ""},
	} {
		got, err := choosePlatform(idx, tc.want)
		if tc.got == "" {
			if err == nil {
				t.Errorf("%s: chose %s", tc.want, got.Digest.Hex)
			}
			continue
		}
		if err != nil || got.Digest.Hex != tc.got {
			t.Errorf("%s: got %s %v, want %s", tc.want, got.Digest.Hex, err, tc.got)
		}
	}
}

// TestVariantArtifactType: an index entry carries its manifest's
// artifactType, a ModelKit's for a --preset kitops variant (it said ModelPack
// before), and the index the one its entries share, none when they differ.
func TestVariantArtifactType(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, map[string]string{"model.safetensors": "w", "run.sh": "#!/bin/sh\n"})
	index := func() *v1.IndexManifest {
		t.Helper()
		ref, err := name.ParseReference(reg + "/va/m:1")
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(ref)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		return im
	}
	if _, err := Push(bg, reg+"/va/m:1", []string{src}, PushOptions{LayerFormat: LayerFormatKitOps, Options: Options{Platform: "linux/amd64"}}); err != nil {
		t.Fatal(err)
	}
	im := index()
	if im.ArtifactType != ArtifactTypeKitOpsManifest || im.Manifests[0].ArtifactType != ArtifactTypeKitOpsManifest {
		t.Errorf("kitops variant: index %q, entry %q, want %s", im.ArtifactType, im.Manifests[0].ArtifactType, ArtifactTypeKitOpsManifest)
	}
	if _, err := Push(bg, reg+"/va/m:1", []string{src}, PushOptions{Options: Options{Platform: "linux/arm64"}}); err != nil {
		t.Fatal(err)
	}
	im = index()
	if im.ArtifactType != "" || len(im.Manifests) != 2 || im.Manifests[1].ArtifactType != ArtifactTypeModelManifest {
		t.Errorf("kitops and modelpack variants: %+v", im)
	}
	for _, d := range im.Manifests {
		ref, err := name.ParseReference(reg + "/va/m@" + d.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		b, err := remote.Get(ref)
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeManifest(b.Manifest)
		if err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != d.ArtifactType {
			t.Errorf("%s: entry artifactType %q, manifest's %q", d.Platform, d.ArtifactType, m.ArtifactType)
		}
	}
}
