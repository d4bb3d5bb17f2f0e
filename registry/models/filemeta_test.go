package models

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileMetadataRoundTrip: an executable keeps mode 0755 and every file
// its mtime through push and pull (with and without a cache), as the
// org.cncf.model.file.metadata+json annotation modctl reads.
func TestFileMetadataRoundTrip(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, map[string]string{"run.sh": "#!/bin/sh\necho hi\n", "model.safetensors": "weights", "README.md": "doc"})
	os.Chmod(filepath.Join(src, "run.sh"), 0o755)
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, f := range []string{"run.sh", "model.safetensors", "README.md"} {
		os.Chtimes(filepath.Join(src, f), mtime, mtime)
	}
	res, err := Push(bg, reg+"/meta/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Inspect(bg, res.Ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range a.Layers {
		var m FileMetadata
		if err := json.Unmarshal([]byte(l.Annotations[AnnotationFileMetadata]), &m); err != nil {
			t.Fatalf("layer %s: %s: %v", l.Path, AnnotationFileMetadata, err)
		}
		want := uint32(0o644)
		if l.Path == "run.sh" {
			want = 0o755
		}
		if m.Mode != want || !m.ModTime.Equal(mtime) || m.Name != filepath.Base(l.Path) || m.Typeflag != '0' {
			t.Errorf("layer %s: metadata %+v", l.Path, m)
		}
	}
	checkPulledMeta(t, res.Ref, "raw", map[string]os.FileMode{"run.sh": 0o755, "model.safetensors": 0o644, "README.md": 0o644}, mtime)
}

// TestTarLayerMetadataRoundTrip: a --layer-format tar push and its pull keep
// each file's mode and mtime from the tar headers, as raw layers keep them
// from their metadata annotation.
func TestTarLayerMetadataRoundTrip(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, map[string]string{"run.sh": "#!/bin/sh\necho hi\n", "model.safetensors": "weights", "docs/README.md": "doc"})
	os.Chmod(filepath.Join(src, "run.sh"), 0o755)
	mtime := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, f := range []string{"run.sh", "model.safetensors", "docs/README.md"} {
		os.Chtimes(filepath.Join(src, f), mtime, mtime)
	}
	for _, format := range []string{LayerFormatTar, LayerFormatKitOps} {
		res, err := Push(bg, reg+"/tarmeta/m:"+format, []string{src}, PushOptions{LayerFormat: format})
		if err != nil {
			t.Fatal(err)
		}
		checkPulledMeta(t, res.Ref, format, map[string]os.FileMode{"run.sh": 0o755, "model.safetensors": 0o644, "docs/README.md": 0o644, "docs": 0o755}, mtime)
	}
}

// TestTarFolderMtime: a folder entry of a tar layer gives the pulled folder
// its mtime, although its files are written into it after the entry (as a
// peer's tar of a whole folder has it), and a folder named by several layers
// gets the newest of their mtimes.
func TestTarFolderMtime(t *testing.T) {
	reg := newRegistry(t, nil)
	older := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	newer := older.Add(time.Hour)
	mk := func(dirTime time.Time, file string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range []*tar.Header{
			{Typeflag: tar.TypeDir, Name: "sub/", Mode: 0o755, ModTime: dirTime},
			{Typeflag: tar.TypeDir, Name: "sub/deep/", Mode: 0o755, ModTime: dirTime},
			{Typeflag: tar.TypeReg, Name: "sub/deep/" + file, Mode: 0o644, Size: 1, ModTime: newer.Add(time.Hour)},
		} {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Size > 0 {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		return buf.Bytes()
	}
	ref := pushArtifact(t, reg+"/dirtime/m:1", ArtifactTypeModelManifest, MediaTypeModelConfig, modelPackConfig("sha256:x"),
		[]testLayer{
			{mt: "application/vnd.cncf.model.code.v1.tar", data: mk(newer, "a")},
			{mt: "application/vnd.cncf.model.code.v1.tar", data: mk(older, "b")},
		}, nil)
	for _, cache := range []string{"", t.TempDir()} {
		dir := t.TempDir()
		if _, err := Pull(bg, ref, dir, PullOptions{CacheDir: cache}); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"sub", "sub/deep"} {
			fi, err := os.Stat(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(newer) {
				t.Errorf("cache %q: %s mtime %v, want %v", cache, d, fi.ModTime(), newer)
			}
		}
	}
}

// TestPullHonoursPeerMetadata: the annotation as another tool writes it
// (modctl: decimal mode, setuid bit included) sets the permission bits but
// never setuid.
func TestPullHonoursPeerMetadata(t *testing.T) {
	reg := newRegistry(t, nil)
	meta := `{"name":"tool","mode":2541,"uid":0,"gid":0,"size":4,"mtime":"2024-01-02T03:04:05Z","typeflag":48}` // 04755
	ref := pushArtifact(t, reg+"/peer/m:1", ArtifactTypeModelManifest, MediaTypeModelConfig, modelPackConfig("sha256:x"),
		[]testLayer{{mt: "application/vnd.cncf.model.code.v1.raw", data: []byte("tool"),
			ann: map[string]string{AnnotationFilepath: "bin/tool", AnnotationFileMetadata: meta}}}, nil)
	dir := t.TempDir()
	if _, err := Pull(bg, ref, dir, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "bin/tool"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&(os.ModePerm|os.ModeSetuid) != 0o755 || !fi.ModTime().Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("mode %v mtime %v", fi.Mode(), fi.ModTime())
	}
}

// TestPushReproducible: pushing one folder twice gives one digest (createdAt
// is the newest file's mtime, or SOURCE_DATE_EPOCH), and the format is the
// largest weight file's.
func TestPushReproducible(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, map[string]string{"model.safetensors": strings.Repeat("w", 4096), "aux.onnx": "small", "config.json": "{}"})
	newest := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "model.safetensors"), newest.Add(-time.Hour), newest.Add(-time.Hour))
	os.Chtimes(filepath.Join(src, "aux.onnx"), newest, newest)
	os.Chtimes(filepath.Join(src, "config.json"), newest.Add(-2*time.Hour), newest.Add(-2*time.Hour))
	t.Setenv("SOURCE_DATE_EPOCH", "")
	a, err := Push(bg, reg+"/repro/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Push(bg, reg+"/repro/m:2", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Errorf("one folder pushed twice: %s and %s", a.Digest, b.Digest)
	}
	cfg := configOf(t, a.Ref)
	if !cfg.Descriptor.CreatedAt.Equal(newest) || cfg.Config.Format != "safetensors" {
		t.Errorf("createdAt %v format %q, want %v safetensors", cfg.Descriptor.CreatedAt, cfg.Config.Format, newest)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	c, err := Push(bg, reg+"/repro/m:3", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := configOf(t, c.Ref); !cfg.Descriptor.CreatedAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("SOURCE_DATE_EPOCH: createdAt %v", cfg.Descriptor.CreatedAt)
	}
}

func configOf(t *testing.T, ref string) ModelConfig {
	t.Helper()
	a, err := Inspect(bg, ref, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg ModelConfig
	if err := json.Unmarshal(a.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSafetensorsParams: a safetensors folder gets format safetensors, the
// paramSize its tensors add up to and the precision most of them have.
func TestSafetensorsParams(t *testing.T) {
	header := `{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[1000,1500],"data_offsets":[0,3000000]},` +
		`"b":{"dtype":"F32","shape":[10],"data_offsets":[3000000,3000040]}}`
	var buf []byte
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(header)))
	buf = append(buf, header...)
	buf = append(buf, make([]byte, 3000040)...)
	src := writeTree(t, map[string]string{"model.safetensors": string(buf), "config.json": "{}"})
	reg := newRegistry(t, nil)
	res, err := Push(bg, reg+"/st/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := configOf(t, res.Ref)
	if cfg.Config.Format != "safetensors" || cfg.Config.ParamSize != "1.5m" || cfg.Config.Precision != "bfloat16" {
		t.Errorf("config %+v", cfg.Config)
	}
	for n, want := range map[int64]string{7_000_000_000: "7b", 1_500_000_000: "1.5b", 350_000_000: "350m", 12_000: "12k", 999: "999"} {
		if got := paramSize(n); got != want {
			t.Errorf("paramSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestPrecisionAsModctl: the precision of a pushed safetensors model is
// spelled as modctl c8e484d writes it for the same model.
// testdata/modctl-config-bfloat16.json is the config that modctl built
// (modctl modelfile generate, then build) from a folder holding a BF16
// safetensors file and a Hugging Face config.json with torch_dtype
// bfloat16; cairn wrote "bf16" there before. The other dtypes take the
// names of the model-spec's precision table (docs/config.md).
func TestPrecisionAsModctl(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "modctl-config-bfloat16.json"))
	if err != nil {
		t.Fatal(err)
	}
	var peer ModelConfig
	if err := json.Unmarshal(b, &peer); err != nil {
		t.Fatal(err)
	}
	header := `{"w":{"dtype":"BF16","shape":[4,8],"data_offsets":[0,64]},"b":{"dtype":"BF16","shape":[8],"data_offsets":[64,80]},` +
		`"scale":{"dtype":"F32","shape":[2],"data_offsets":[80,88]}}`
	var buf []byte
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(header)))
	buf = append(buf, header...)
	buf = append(buf, make([]byte, 88)...)
	src := writeTree(t, map[string]string{"model.safetensors": string(buf), "config.json": `{"torch_dtype":"bfloat16"}`})
	reg := newRegistry(t, nil)
	res, err := Push(bg, reg+"/prec/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := configOf(t, res.Ref).Config.Precision; got != peer.Config.Precision || got != "bfloat16" {
		t.Errorf("precision %q, modctl wrote %q", got, peer.Config.Precision)
	}
	for dt, want := range map[string]string{"F64": "float64", "F32": "float32", "F16": "float16", "F8_E4M3": "float8_e4m3",
		"F8_E5M2": "float8_e5m2", "I8": "int8", "U8": "uint8", "I64": "int64", "BOOL": "bool", "C64": "complex64"} {
		if got := dtypeName(dt); got != want {
			t.Errorf("dtypeName(%s) = %q, want %q", dt, got, want)
		}
	}
}

// TestPullCountsBytes: a first pull downloads every blob; a second one into
// another folder with the same cache downloads nothing and reuses them all.
func TestPullCountsBytes(t *testing.T) {
	reg := newRegistry(t, nil)
	src := writeTree(t, map[string]string{"model.onnx": strings.Repeat("w", 5000), "README.md": "doc"})
	res, err := Push(bg, reg+"/count/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	first, err := Pull(bg, res.Ref, t.TempDir(), PullOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Pull(bg, res.Ref, t.TempDir(), PullOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if first.DownloadedBytes != 5003 || first.ReusedBytes != 0 || second.DownloadedBytes != 0 || second.ReusedBytes != 5003 {
		t.Errorf("first %d/%d, second %d/%d bytes downloaded/reused", first.DownloadedBytes, first.ReusedBytes,
			second.DownloadedBytes, second.ReusedBytes)
	}
}

// checkPulledMeta pulls ref without and with a cache and checks each file's
// mode and mtime.
func checkPulledMeta(t *testing.T, ref, label string, modes map[string]os.FileMode, mtime time.Time) {
	t.Helper()
	for _, cache := range []string{"", t.TempDir()} {
		dir := t.TempDir()
		if _, err := Pull(bg, ref, dir, PullOptions{CacheDir: cache}); err != nil {
			t.Fatal(err)
		}
		for f, want := range modes {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want || !fi.ModTime().Equal(mtime) {
				t.Errorf("%s cache %q: %s: mode %v mtime %v, want %v %v", label, cache, f, fi.Mode().Perm(), fi.ModTime(), want, mtime)
			}
		}
	}
}
