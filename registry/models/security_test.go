package models

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestPullRefusesUnsafePaths: paths that are absolute, contain "..", or go
// through a link out of DIR fail with ErrUnsafePath naming the path, and
// nothing is written outside DIR.
func TestPullRefusesUnsafePaths(t *testing.T) {
	reg := newRegistry(t, nil)
	raw := func(p string) []testLayer {
		return []testLayer{{mt: MediaTypeModelWeightRaw, data: []byte("evil"), ann: map[string]string{AnnotationFilepath: p}}}
	}
	tarred := func(e ...tarEntry) []testLayer {
		return []testLayer{{mt: "application/vnd.cncf.model.weight.v1.tar", data: mkTar(t, e, "")}}
	}
	cases := []struct {
		name   string
		layers []testLayer
		plant  bool // DIR/esc is a symlink to a folder outside DIR before the pull
		naming string
	}{
		{name: "raw dot-dot", layers: raw("../evil"), naming: "../evil"},
		{name: "raw nested dot-dot", layers: raw("a/../../evil"), naming: "a/../../evil"},
		{name: "raw absolute", layers: raw("/tmp/evil"), naming: "/tmp/evil"},
		{name: "raw reserved folder", layers: raw(".cairn-pull/x"), naming: ".cairn-pull/x"},
		{name: "raw through a planted link", layers: raw("esc/evil"), plant: true, naming: "esc/evil"},
		{name: "tar dot-dot", layers: tarred(tarEntry{name: "../evil", body: "x"}), naming: "../evil"},
		{name: "tar absolute", layers: tarred(tarEntry{name: "/tmp/evil", body: "x"}), naming: "/tmp/evil"},
		{name: "tar symlink out", layers: tarred(tarEntry{name: "link", typ: tar.TypeSymlink, link: "../outside"}), naming: "link"},
		{name: "tar symlink absolute", layers: tarred(tarEntry{name: "link", typ: tar.TypeSymlink, link: "/etc"}), naming: "link"},
		{name: "tar write through earlier symlink", layers: tarred(
			tarEntry{name: "sub/", typ: tar.TypeDir},
			tarEntry{name: "link", typ: tar.TypeSymlink, link: "sub"},
			tarEntry{name: "link/evil", body: "x"}), naming: "link/evil"},
		{name: "tar write through planted link", layers: tarred(tarEntry{name: "esc/evil", body: "x"}), plant: true, naming: "esc/evil"},
		{name: "tar hard link out", layers: tarred(tarEntry{name: "hl", typ: tar.TypeLink, link: "../outside/x"}), naming: "hl"},
		// Each target stays inside alone; followed through the other link it does not.
		{name: "tar symlink chain", layers: tarred(
			tarEntry{name: "d", typ: tar.TypeSymlink, link: "."},
			tarEntry{name: "s", typ: tar.TypeSymlink, link: "d/.."},
			tarEntry{name: "s/outside/evil", body: "x"}), naming: `"s"`},
		{name: "tar symlink chain made by relinking", layers: tarred(
			tarEntry{name: "sub/", typ: tar.TypeDir},
			tarEntry{name: "d", typ: tar.TypeSymlink, link: "sub"},
			tarEntry{name: "s", typ: tar.TypeSymlink, link: "d/.."},
			tarEntry{name: "d", typ: tar.TypeSymlink, link: "."}), naming: `"s"`},
		{name: "tar symlink chain across layers", layers: append(
			tarred(tarEntry{name: "d", typ: tar.TypeSymlink, link: "."}),
			tarred(tarEntry{name: "s", typ: tar.TypeSymlink, link: "d/.."})...), naming: `"s"`},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			dir := filepath.Join(parent, "out")
			os.MkdirAll(outside, 0o755)
			os.MkdirAll(dir, 0o755)
			if tc.plant {
				if err := os.Symlink(outside, filepath.Join(dir, "esc")); err != nil {
					t.Fatal(err)
				}
			}
			ref := pushArtifact(t, reg+"/evil/m:"+string(rune('a'+i)), ArtifactTypeModelManifest, MediaTypeModelConfig,
				modelPackConfig("sha256:x"), tc.layers, nil)
			_, err := Pull(bg, ref, dir, PullOptions{})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("got %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), tc.naming) {
				t.Errorf("error %q does not name %q", err, tc.naming)
			}
			entries, _ := os.ReadDir(outside)
			if len(entries) != 0 {
				t.Errorf("written outside DIR: %v", entries)
			}
			top, _ := os.ReadDir(parent)
			if len(top) != 2 {
				t.Errorf("parent of DIR has %d entries", len(top))
			}
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Error("/tmp/evil exists")
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			filepath.WalkDir(dir, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeSymlink != 0 && q != filepath.Join(dir, "esc") {
					rel, _ := filepath.Rel(dir, q)
					target, _ := os.Readlink(q)
					if _, err := resolveLink(root, filepath.ToSlash(rel), target); err != nil {
						t.Errorf("link left behind: %v", err)
					}
				}
				return nil
			})
		})
	}
}

// corrupting flips one byte of the blob with the given digest on its way out.
func corrupting(digest string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(&flipWriter{ResponseWriter: w}, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

type flipWriter struct {
	http.ResponseWriter
	done bool
}

func (f *flipWriter) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		c := append([]byte(nil), b...)
		c[len(c)/2] ^= 0xff
		f.done = true
		return f.ResponseWriter.Write(c)
	}
	return f.ResponseWriter.Write(b)
}

func TestPullCorruptedBlob(t *testing.T) {
	weights := []byte(strings.Repeat("weights!", 1000))
	reg := newRegistry(t, corrupting(sha(weights)))
	src := writeTree(t, map[string]string{"model.onnx": string(weights), "README.md": "ok"})
	res, err := Push(bg, reg+"/corrupt/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cache := range []string{"", t.TempDir()} {
		dir := t.TempDir()
		_, err = Pull(bg, res.Ref, dir, PullOptions{CacheDir: cache})
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("got %v, want ErrDigestMismatch", err)
		}
		if !strings.Contains(err.Error(), "model.onnx") {
			t.Errorf("error %q does not name the layer", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err == nil {
			t.Error("model.onnx exists after a digest mismatch")
		}
		if cache != "" {
			if _, err := os.Stat(filepath.Join(cache, "blobs", "sha256", sha(weights)[7:])); err == nil {
				t.Error("corrupted blob kept in the cache")
			}
		}
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && strings.Contains(p, "model.onnx") {
				t.Errorf("left behind: %s", p)
			}
			return nil
		})
	}
}

// cutting breaks the first cuts GETs of a blob after limit bytes each; it
// records the Range headers it sees, and strips them when noRange.
type cutting struct {
	digest  string
	limit   int
	cuts    int
	noRange bool
	mu      sync.Mutex
	gets    int
	ranges  []string
}

func (c *cutting) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+c.digest) {
			next.ServeHTTP(w, r)
			return
		}
		c.mu.Lock()
		c.gets++
		first := c.gets <= c.cuts
		c.ranges = append(c.ranges, r.Header.Get("Range"))
		c.mu.Unlock()
		if c.noRange {
			r.Header.Del("Range")
		}
		if first {
			next.ServeHTTP(&cutWriter{ResponseWriter: w, left: c.limit}, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(b []byte) (int, error) {
	if len(b) > c.left {
		c.ResponseWriter.Write(b[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.left -= len(b)
	return c.ResponseWriter.Write(b)
}

func TestPullResumes(t *testing.T) {
	weights := []byte(strings.Repeat("0123456789abcdef", 64<<10)) // 1 MiB
	for _, tc := range []struct {
		name    string
		noRange bool
		cache   bool
	}{
		{name: "range, no cache"}, {name: "range, cache", cache: true}, {name: "registry ignores range", noRange: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every attempt of the first pull breaks off after 300 KiB.
			cut := &cutting{digest: sha(weights), limit: 300 << 10, cuts: attempts, noRange: tc.noRange}
			reg := newRegistry(t, cut.wrap)
			src := writeTree(t, map[string]string{"model.onnx": string(weights), "README.md": "ok"})
			res, err := Push(bg, reg+"/resume/m:1", []string{src}, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			opts := PullOptions{}
			if tc.cache {
				opts.CacheDir = t.TempDir()
			}
			if _, err := Pull(bg, res.Ref, dir, opts); err == nil {
				t.Fatal("first pull succeeded through a broken connection")
			}
			if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err == nil {
				t.Error("model.onnx exists after a broken download")
			}
			if _, err := Pull(bg, res.Ref, dir, opts); err != nil {
				t.Fatal(err)
			}
			equalTrees(t, readTree(t, dir), map[string]string{"model.onnx": string(weights), "README.md": "ok"})
			if len(cut.ranges) != attempts+1 {
				t.Fatalf("%d GETs of the blob, want %d", len(cut.ranges), attempts+1)
			}
			for i, r := range cut.ranges[1:] {
				want := fmt.Sprintf("bytes=%d-%d", (i+1)*300<<10, len(weights)-1)
				if tc.noRange {
					want = fmt.Sprintf("bytes=%d-%d", 300<<10, len(weights)-1) // starts over each time
				}
				if r != want {
					t.Errorf("GET %d asked Range %q, want %q", i+2, r, want)
				}
			}
			// Another pull finds every file in place and downloads nothing.
			if _, err := Pull(bg, res.Ref, dir, opts); err != nil {
				t.Fatal(err)
			}
			if len(cut.ranges) != attempts+1 {
				t.Errorf("third pull downloaded again")
			}
		})
	}
}

// TestPullDamagedCache: a cached blob damaged on disk is caught when used,
// dropped from the cache, and downloaded again by the next pull.
func TestPullDamagedCache(t *testing.T) {
	reg := newRegistry(t, nil)
	weights := strings.Repeat("cached!", 1000)
	src := writeTree(t, map[string]string{"model.onnx": weights})
	res, err := Push(bg, reg+"/damaged/m:1", []string{src}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := Pull(bg, res.Ref, t.TempDir(), PullOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(cache, "blobs", "sha256", res.Files[0].Digest[len("sha256:"):])
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[10] ^= 1
	os.WriteFile(blob, b, 0o644)
	dir := t.TempDir()
	if _, err := Pull(bg, res.Ref, dir, PullOptions{CacheDir: cache}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("got %v, want ErrDigestMismatch", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); err == nil {
		t.Error("model.onnx written from a damaged cache blob")
	}
	if _, err := Pull(bg, res.Ref, dir, PullOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	equalTrees(t, readTree(t, dir), map[string]string{"model.onnx": weights})
}

// TestExtractTarLinks: links inside the output folder, also climbing with
// ".." or through another link, are made and can be read through; links
// leading out through other links are refused with ErrUnsafePath naming
// them, and none is left behind.
func TestExtractTarLinks(t *testing.T) {
	sym := func(name, link string) tarEntry { return tarEntry{name: name, typ: tar.TypeSymlink, link: link} }
	dir := func(name string) tarEntry { return tarEntry{name: name, typ: tar.TypeDir} }
	file := func(name, body string) tarEntry { return tarEntry{name: name, body: body} }
	cases := []struct {
		name    string
		entries []tarEntry
		read    map[string]string // path through a link: content
		naming  string            // "" when the extraction must succeed
	}{
		{name: "relative link", entries: []tarEntry{dir("v2/"), file("v2/model.bin", "w"), sym("latest", "v2/model.bin")},
			read: map[string]string{"latest": "w"}},
		{name: "link up a folder", entries: []tarEntry{dir("a/"), file("c", "see"), sym("a/b", "../c")},
			read: map[string]string{"a/b": "see"}},
		{name: "link through a link", entries: []tarEntry{dir("v2/"), file("v2/model.bin", "w"), sym("cur", "v2"), sym("m", "cur/../v2/model.bin")},
			read: map[string]string{"m": "w"}},
		{name: "link to a later file", entries: []tarEntry{sym("latest", "v2/model.bin"), dir("v2/"), file("v2/model.bin", "w")},
			read: map[string]string{"latest": "w"}},
		{name: "chain", entries: []tarEntry{sym("d", "."), sym("s", "d/..")}, naming: `"s"`},
		{name: "chain, file under it", entries: []tarEntry{sym("d", "."), sym("s", "d/.."), file("s/secret", "x")}, naming: `"s"`},
		{name: "chain, two hops", entries: []tarEntry{dir("a/"), sym("a/up", ".."), sym("d", "a/up"), sym("s", "d/..")}, naming: `"s"`},
		{name: "chain made by relinking", entries: []tarEntry{dir("sub/"), sym("d", "sub"), sym("s", "d/.."), sym("d", ".")}, naming: `"s"`},
		{name: "dot-dot after a later link", entries: []tarEntry{sym("s", "d/.."), sym("d", ".")}, naming: `"s"`},
		{name: "loop", entries: []tarEntry{sym("a", "b/x"), sym("b", "a/y")}, naming: `"a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			out := filepath.Join(parent, "out")
			os.Mkdir(out, 0o755)
			root, err := os.OpenRoot(out)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			p := &puller{dir: root}
			_, err = p.extractTar(bytes.NewReader(mkTar(t, tc.entries, "")), "", "", 0)
			if tc.naming == "" {
				if err != nil {
					t.Fatal(err)
				}
				for q, want := range tc.read {
					b, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(q)))
					if err != nil || string(b) != want {
						t.Errorf("read %s: %q, %v; want %q", q, b, err, want)
					}
				}
				return
			}
			if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), tc.naming) {
				t.Fatalf("got %v, want ErrUnsafePath naming %s", err, tc.naming)
			}
			filepath.WalkDir(out, func(q string, d fs.DirEntry, err error) error {
				if err == nil && d.Type()&fs.ModeSymlink != 0 {
					rel, _ := filepath.Rel(out, q)
					target, _ := os.Readlink(q)
					if _, err := resolveLink(root, filepath.ToSlash(rel), target); err != nil {
						t.Errorf("link left behind: %v", err)
					}
				}
				return nil
			})
			if top, _ := os.ReadDir(parent); len(top) != 1 {
				t.Errorf("written next to the output folder: %v", top)
			}
		})
	}
}
