package models

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzDecodeManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"artifactType":"application/vnd.cncf.model.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.model.config.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","size":2},"layers":[{"mediaType":"application/vnd.cncf.model.weight.v1.raw","digest":"sha256:` + strings.Repeat("b", 64) + `","size":3,"annotations":{"org.cncf.model.filepath":"../x"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.kitops.modelkit.config.v1+json","digest":"sha256:` + strings.Repeat("c", 64) + `","size":2},"layers":[{"mediaType":"application/vnd.kitops.modelkit.model.v1.tar+gzip","digest":"sha256:` + strings.Repeat("d", 64) + `","size":3}]}`))
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if isIndex(b, "") {
			if idx, err := decodeIndex(b); err == nil {
				_, _ = choosePlatform(idx, "linux/arm64")
			}
		}
		m, err := decodeManifest(b)
		if err != nil {
			return
		}
		_ = artifactKind(m)
		jobs, err := planLayers(m)
		if err != nil {
			return
		}
		for _, j := range jobs {
			for _, l := range j.layers {
				if l.path == "" {
					continue
				}
				if path.IsAbs(l.path) || l.path == ".." || strings.HasPrefix(l.path, "../") || strings.Contains(l.path, "/../") {
					t.Fatalf("planLayers accepted unsafe path %q", l.path)
				}
			}
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	f.Add([]byte(`{"descriptor":{"name":"m","createdAt":"2026-01-01T00:00:00Z"},"modelfs":{"type":"layers","diffIds":["sha256:x"]},"config":{"format":"onnx"}}`))
	f.Add([]byte(`{"descriptor":{"createdAt":"not a time"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c ModelConfig
		if json.Unmarshal(b, &c) != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var c2 ModelConfig
		if err := json.Unmarshal(out, &c2); err != nil {
			t.Fatalf("decode re-encoded config: %v", err)
		}
	})
}

func FuzzCleanRel(f *testing.F) {
	for _, s := range []string{"a/b", "../a", "/a", "a/../b", "./a", "a//b", ".cairn-pull/x", "C:/x", "a\\..\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c, err := cleanRel(p)
		if err != nil {
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("error %v is not ErrUnsafePath", err)
			}
			return
		}
		if path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") || c == "." || filepath.IsAbs(filepath.FromSlash(c)) {
			t.Fatalf("cleanRel(%q) = %q", p, c)
		}
	})
}

// FuzzExtractTar: whatever the tar stream, nothing lands outside the root.
func FuzzExtractTar(f *testing.F) {
	f.Add(mkTar(f, []tarEntry{{name: "a/b.bin", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "a"}, {name: "l/c", body: "y"}}, ""))
	f.Add(mkTar(f, []tarEntry{{name: "../x", body: "x"}}, ""))
	f.Add(mkTar(f, []tarEntry{{name: "s", typ: tar.TypeSymlink, link: "../../etc"}, {name: "h", typ: tar.TypeLink, link: "s"}}, ""))
	f.Add(mkTar(f, []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "d/e", body: "z"}}, ""))
	f.Add(mkTar(f, []tarEntry{{name: "d", typ: tar.TypeSymlink, link: "."}, {name: "s", typ: tar.TypeSymlink, link: "d/.."}, {name: "s/x", body: "y"}}, ""))
	f.Add(mkTar(f, []tarEntry{{name: "sub/", typ: tar.TypeDir}, {name: "d", typ: tar.TypeSymlink, link: "sub"}, {name: "s", typ: tar.TypeSymlink, link: "d/.."}, {name: "d", typ: tar.TypeSymlink, link: "."}}, ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "out")
		os.Mkdir(dir, 0o755)
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		p := &puller{dir: root}
		_, _ = p.extractTar(bytes.NewReader(b), "", "", 0)
		entries, _ := os.ReadDir(parent)
		if len(entries) != 1 {
			t.Fatalf("extraction wrote next to the root: %v", entries)
		}
		// Every link left inside points inside.
		filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeSymlink != 0 {
				target, _ := os.Readlink(q)
				rel, _ := filepath.Rel(dir, q)
				if _, err := resolveLink(root, filepath.ToSlash(rel), target); err != nil {
					t.Fatalf("link %s → %s escapes: %v", rel, target, err)
				}
			}
			return nil
		})
	})
}

var _ = io.EOF

// FuzzSafetensorsParams: any file named .safetensors is read without a
// panic, and a header it accepts counts no negative parameters.
func FuzzSafetensorsParams(f *testing.F) {
	h := `{"a":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}`
	f.Add(append(binary.LittleEndian.AppendUint64(nil, uint64(len(h))), h...))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "m.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		byType, err := safetensorsParams(p)
		for dt, n := range byType {
			if err == nil && n < 0 {
				t.Fatalf("%s: %d parameters", dt, n)
			}
		}
	})
}
