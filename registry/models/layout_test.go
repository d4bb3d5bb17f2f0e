package models

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// layoutTree is a model folder with a weight, a script that must keep its
// executable bit, a nested tokenizer file, a doc and a dataset.
func layoutTree(t *testing.T) (string, map[string]string) {
	files := map[string]string{
		"model.safetensors":          strings.Repeat("w", 3000),
		"run.sh":                     "#!/bin/sh\necho hi\n",
		"tokenizer/vocab/vocab.json": `{"a":1}`,
		"README.md":                  "doc",
		"data/eval.csv":              "a\n1\n",
	}
	src := writeTree(t, files)
	os.Chmod(filepath.Join(src, "run.sh"), 0o755)
	mt := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	filepath.Walk(src, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, mt, mt) })
	return src, files
}

// remoteManifest fetches the manifest of ref and a function reading blobs.
func remoteManifest(t *testing.T, ref string) (*v1.Manifest, func(v1.Hash) []byte) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blob := func(h v1.Hash) []byte {
		l, err := remote.Layer(r.Context().Digest(h.String()))
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return m, blob
}

// tarEntries lists a layer's tar headers and the content of its files.
func tarEntries(t *testing.T, b []byte) ([]*tar.Header, map[string]string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var hs []*tar.Header
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs, files
		}
		if err != nil {
			t.Fatalf("not a tar stream: %v", err)
		}
		hs = append(hs, h)
		if h.Typeflag == tar.TypeReg {
			c, _ := io.ReadAll(tr)
			files[h.Name] = string(c)
		}
	}
}

// TestPushTarLayers: --layer-format tar makes one ModelPack tar layer per
// file holding it under its path from the model root, with its parent
// folders and its mode: the layout modctl writes and kit unpacks (at the
// root when the config lists the layers' diffIDs). Pull reads them back
// with the modes kept, and one folder still gives one digest.
func TestPushTarLayers(t *testing.T) {
	reg := newRegistry(t, nil)
	src, files := layoutTree(t)
	t.Setenv("SOURCE_DATE_EPOCH", "")
	res, err := Push(bg, reg+"/tar/m:1", []string{src}, PushOptions{LayerFormat: LayerFormatTar})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Push(bg, reg+"/tar/m:2", []string{src}, PushOptions{LayerFormat: LayerFormatTar})
	if err != nil || again.Digest != res.Digest {
		t.Fatalf("pushed twice: %s and %s (%v)", res.Digest, again.Digest, err)
	}
	for _, f := range res.Files {
		if f.Digest != sha([]byte(files[f.Path])) {
			t.Errorf("result %s: digest %s is not the file's", f.Path, f.Digest)
		}
	}
	m, blob := remoteManifest(t, res.Ref)
	if m.ArtifactType != ArtifactTypeModelManifest || string(m.Config.MediaType) != MediaTypeModelConfig {
		t.Errorf("artifactType %q config %q", m.ArtifactType, m.Config.MediaType)
	}
	var cfg ModelConfig
	json.Unmarshal(blob(m.Config.Digest), &cfg)
	if cfg.Config.Format != "safetensors" || len(cfg.ModelFS.DiffIDs) != len(m.Layers) {
		t.Errorf("config %+v", cfg)
	}
	kitRoot := map[string]string{} // what kit unpacks at the root
	wantMT := map[string]string{"model.safetensors": "weight", "run.sh": "code", "tokenizer/vocab/vocab.json": "weight.config",
		"README.md": "doc", "data/eval.csv": "dataset"}
	for i, l := range m.Layers {
		p := l.Annotations[AnnotationFilepath]
		if want := "application/vnd.cncf.model." + wantMT[p] + ".v1.tar"; string(l.MediaType) != want {
			t.Errorf("%s: media type %s, want %s", p, l.MediaType, want)
		}
		if cfg.ModelFS.DiffIDs[i] != l.Digest.String() {
			t.Errorf("%s: diffID %s, layer %s (uncompressed: they are equal)", p, cfg.ModelFS.DiffIDs[i], l.Digest)
		}
		hs, got := tarEntries(t, blob(l.Digest))
		var names []string
		for _, h := range hs {
			names = append(names, h.Name)
			if h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)) {
				t.Errorf("%s: header %s: uname %q gname %q mtime %v", p, h.Name, h.Uname, h.Gname, h.ModTime)
			}
			if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeDir {
				t.Errorf("%s: entry %s of type %c (kit reads files and folders only)", p, h.Name, h.Typeflag)
			}
		}
		wantNames := map[string]string{"tokenizer/vocab/vocab.json": "tokenizer/ tokenizer/vocab/ tokenizer/vocab/vocab.json",
			"data/eval.csv": "data/ data/eval.csv"}[p]
		if wantNames == "" {
			wantNames = p
		}
		if strings.Join(names, " ") != wantNames {
			t.Errorf("%s: entries %v, want %s", p, names, wantNames)
		}
		if mode := hs[len(hs)-1].Mode; p == "run.sh" && mode != 0o755 || p != "run.sh" && mode != 0o644 {
			t.Errorf("%s: mode %o", p, mode)
		}
		for n, c := range got {
			kitRoot[n] = c
		}
	}
	equalTrees(t, kitRoot, files)

	out := t.TempDir()
	pr, err := Pull(bg, res.Ref, out, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalTrees(t, readTree(t, out), files)
	if fi, err := os.Stat(filepath.Join(out, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("pulled run.sh: %v %v", fi.Mode(), err)
	}
	for _, f := range pr.Files {
		if f.Digest != sha([]byte(files[f.Path])) {
			t.Errorf("pulled %s: digest %s", f.Path, f.Digest)
		}
	}
}

// kitMediaType is kit's reading of a ModelKit layer's media type
// (pkg/lib/constants/mediaType.go at kit v1.7).
var kitMediaType = regexp.MustCompile(`^application/vnd.kitops.modelkit.(\w+).v1.tar(?:\+(\w+))?`)

// TestPushKitOps: --layer-format kitops (the kitops preset) pushes a KitOps
// ModelKit: a Kitfile config listing every layer with its digest, one
// model layer first, then model parts, code, datasets, docs, each a tar
// of one file under its path. The test walks the layers as kit's unpack
// does (one index per type into the Kitfile's lists, the digests checked)
// and cairn pulls it back with the modes kept.
func TestPushKitOps(t *testing.T) {
	reg := newRegistry(t, nil)
	src, files := layoutTree(t)
	res, err := Push(bg, reg+"/kit/m:1", []string{src}, PushOptions{LayerFormat: LayerFormatKitOps, Name: "demo", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	m, blob := remoteManifest(t, res.Ref)
	if m.ArtifactType != ArtifactTypeKitOpsManifest || string(m.Config.MediaType) != MediaTypeKitOpsConfig {
		t.Errorf("artifactType %q config %q", m.ArtifactType, m.Config.MediaType)
	}
	var kf Kitfile
	if err := json.Unmarshal(blob(m.Config.Digest), &kf); err != nil {
		t.Fatal(err)
	}
	if kf.ManifestVersion != "1.0.0" || kf.Package.Name != "demo" || kf.Model == nil || kf.Model.Path != "model.safetensors" ||
		kf.Model.Format != "safetensors" || len(kf.Model.Parts) != 1 || len(kf.Code) != 1 || len(kf.DataSets) != 1 || len(kf.Docs) != 1 {
		t.Fatalf("Kitfile %+v", kf)
	}
	var types []string
	var parts, code, data, docs int
	unpacked := map[string]string{}
	for _, l := range m.Layers {
		mt := kitMediaType.FindStringSubmatch(string(l.MediaType))
		if mt == nil || mt[2] != "" {
			t.Fatalf("layer media type %s: kit reads it as %v", l.MediaType, mt)
		}
		types = append(types, mt[1])
		var info KitLayerInfo
		switch mt[1] {
		case "model":
			info = kf.Model.KitLayerInfo
		case "modelpart":
			info, parts = kf.Model.Parts[parts].KitLayerInfo, parts+1
		case "code":
			info, code = kf.Code[code].KitLayerInfo, code+1
		case "dataset":
			info, data = kf.DataSets[data].KitLayerInfo, data+1
		case "docs":
			info, docs = kf.Docs[docs].KitLayerInfo, docs+1
		}
		if info.Digest != l.Digest.String() || info.DiffID != l.Digest.String() {
			t.Errorf("%s layer %s: Kitfile says %+v", mt[1], l.Digest, info)
		}
		_, got := tarEntries(t, blob(l.Digest))
		for n, c := range got {
			unpacked[n] = c // with its digest in the Kitfile, kit unpacks a layer at the root
		}
	}
	if strings.Join(types, " ") != "model modelpart code dataset docs" {
		t.Errorf("layer order %v", types)
	}
	equalTrees(t, unpacked, files)

	a, err := Inspect(bg, res.Ref, Options{})
	if err != nil || a.Kind != KindKitOps {
		t.Fatalf("inspect: %v %v", a, err)
	}
	out := t.TempDir()
	if _, err := Pull(bg, res.Ref, out, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	equalTrees(t, readTree(t, out), files)
	if fi, err := os.Stat(filepath.Join(out, "run.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("pulled run.sh: %v %v", fi.Mode(), err)
	}
	if _, err := Push(bg, reg+"/kit/m:2", []string{src}, PushOptions{LayerFormat: "zip"}); err == nil {
		t.Error("layer format zip accepted")
	}
}
