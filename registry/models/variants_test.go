package models

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
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
