package models

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/cdc"
)

// writeVersions writes, in one pass, a file of size random bytes (v1/NAME)
// and the same file with edit bytes in the middle rewritten (v2/NAME). It
// returns the two folders and the files' digests.
func writeVersions(t testing.TB, fname string, size, edit int64) (dir1, dir2, sum1, sum2 string) {
	t.Helper()
	dir1, dir2 = t.TempDir(), t.TempDir()
	f1, err := os.Create(filepath.Join(dir1, fname))
	if err != nil {
		t.Fatal(err)
	}
	f2, err := os.Create(filepath.Join(dir2, fname))
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := sha256.New(), sha256.New()
	w1 := bufio.NewWriterSize(io.MultiWriter(f1, h1), 1<<20)
	w2 := bufio.NewWriterSize(io.MultiWriter(f2, h2), 1<<20)
	base := rand.NewChaCha8([32]byte{7})
	other := rand.NewChaCha8([32]byte{8})
	mid := (size - edit) / 2
	buf := make([]byte, 1<<20)
	alt := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		if off < mid && off+n > mid {
			n = mid - off
		} else if off < mid+edit && off+n > mid+edit {
			n = mid + edit - off
		}
		b := buf[:n]
		base.Read(b)
		w1.Write(b)
		if off >= mid && off < mid+edit {
			a := alt[:n]
			other.Read(a)
			w2.Write(a)
		} else {
			w2.Write(b)
		}
		off += n
	}
	for _, w := range []*bufio.Writer{w1, w2} {
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []*os.File{f1, f2} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dir1, dir2, "sha256:" + hex.EncodeToString(h1.Sum(nil)), "sha256:" + hex.EncodeToString(h2.Sum(nil))
}

func fileSum(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// deltaCase pushes the two versions, pulls the first with a cache, then the
// second with the first in cache, and checks the second moved at most
// maxDownload bytes and wrote the second version byte for byte, with a
// heap that grows by no more than a few copy buffers.
func deltaCase(t *testing.T, reg, repo string, size, edit, maxDownload int64, opts Options) *PullResult {
	t.Helper()
	const fname = "model.safetensors"
	dir1, dir2, sum1, sum2 := writeVersions(t, fname, size, edit)
	start := time.Now()
	p1, err := Push(bg, reg+"/"+repo+":1", []string{dir1}, PushOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Push(bg, reg+"/"+repo+":2", []string{dir2}, PushOptions{Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	if p1.ChunkIndex == "" || p2.ChunkIndex == "" || len(p2.Warnings) > 0 {
		t.Fatalf("chunk index not pushed: %q %q %v", p1.ChunkIndex, p2.ChunkIndex, p2.Warnings)
	}
	t.Logf("pushed 2 × %d MiB in %s", size>>20, time.Since(start).Round(time.Millisecond))
	cache := t.TempDir()
	start = time.Now()
	r1, err := Pull(bg, p1.Ref, t.TempDir(), PullOptions{Options: opts, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Files[0].Digest != sum1 || r1.ReusedBytes != 0 {
		t.Fatalf("first pull: %+v", r1)
	}
	t.Logf("first pull: %d bytes downloaded, %d reused, %s", r1.DownloadedBytes, r1.ReusedBytes, time.Since(start).Round(time.Millisecond))
	out := t.TempDir()
	start = time.Now()
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	base := ms0.HeapInuse // an in-process registry keeps its blobs on the heap
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	r2, err := Pull(bg, p2.Ref, out, PullOptions{Options: opts, CacheDir: cache})
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	grew := int64(peak.Load()) - int64(base)
	t.Logf("heap in use during the delta pull of %d MiB: %.1f MiB before, %.1f MiB at the peak (+%.1f MiB)", size>>20,
		float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(grew)/(1<<20))
	// One copy buffer per rebuild goroutine and the connections' buffers,
	// whatever the size of the file.
	if grew > 32<<20 {
		t.Errorf("heap grew by %d MiB during the delta pull: it is not streamed", grew>>20)
	}
	t.Logf("second pull: %d bytes downloaded (%.1f MiB), %d reused, %s, delta %+v", r2.DownloadedBytes,
		float64(r2.DownloadedBytes)/(1<<20), r2.ReusedBytes, time.Since(start).Round(time.Millisecond), r2.Deltas)
	if got := fileSum(t, filepath.Join(out, fname)); got != sum2 {
		t.Fatalf("second pull wrote %s, want %s", got, sum2)
	}
	if r2.DownloadedBytes > maxDownload {
		t.Errorf("second pull downloaded %d bytes, want ≤ %d", r2.DownloadedBytes, maxDownload)
	}
	if r2.DownloadedBytes+r2.ReusedBytes < size {
		t.Errorf("downloaded %d + reused %d < %d", r2.DownloadedBytes, r2.ReusedBytes, size)
	}
	if len(r2.Deltas) != 1 || r2.Deltas[0].Fallback != "" || r2.Deltas[0].Ranges == 0 {
		t.Errorf("delta %+v, want one rebuilt layer", r2.Deltas)
	}
	// A third pull of the second version into a new folder takes it from
	// the cache.
	r3, err := Pull(bg, p2.Ref, t.TempDir(), PullOptions{Options: opts, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if r3.DownloadedBytes != 0 {
		t.Errorf("third pull downloaded %d bytes", r3.DownloadedBytes)
	}
	return r2
}

// TestIntegrationDeltaDockerRegistry: against Debian's docker-registry (no
// referrers API: the fallback tag), a 256 MiB weight file with 16 MiB
// rewritten in the middle moves ≤ 24 MiB on the second pull.
func TestIntegrationDeltaDockerRegistry(t *testing.T) {
	reg := testenv.Require(t, testenv.Registry)
	repo := "it/delta" + strings.ToLower(time.Now().Format("150405.000000"))
	repo = strings.ReplaceAll(repo, ".", "")
	r := deltaCase(t, reg, repo, 256<<20, 16<<20, 24<<20, Options{PlainHTTP: true})
	// Other tools see the referrer: go-containerregistry's Referrers
	// (referrers API, else the fallback tag).
	d, err := name.NewDigest(reg+"/"+repo+"@"+r.Digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Referrers(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].ArtifactType != ArtifactTypeChunkIndex {
		t.Errorf("referrers of %s: %+v", r.Digest, im.Manifests)
	}
}

// TestDeltaPull: the same against go-containerregistry's registry (which
// has the referrers API), and a pull into the folder holding the first
// version, without a cache, rebuilds from the file in place.
func TestDeltaPull(t *testing.T) {
	reg := newRegistry(t, nil)
	deltaCase(t, reg, "delta/m", 64<<20, 4<<20, 8<<20, Options{})

	dir1, dir2, _, sum2 := writeVersions(t, "w.bin", 32<<20, 1<<20)
	p1, err := Push(bg, reg+"/delta/inplace:1", []string{dir1}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := Push(bg, reg+"/delta/inplace:2", []string{dir2}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Pull(bg, p1.Ref, out, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Pull(bg, p2.Ref, out, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, filepath.Join(out, "w.bin")); got != sum2 {
		t.Fatalf("in place: wrote %s, want %s", got, sum2)
	}
	if r.DownloadedBytes > 3<<20 || len(r.Deltas) != 1 || r.Deltas[0].Fallback != "" {
		t.Errorf("in place: downloaded %d, delta %+v", r.DownloadedBytes, r.Deltas)
	}
	if _, err := os.Stat(filepath.Join(out, workDir)); err == nil {
		t.Errorf("%s left behind", workDir)
	}

	// The cache holds the first version without its chunk index (pushed
	// without one, or pulled before chunk indexes): the pull chunks the
	// cached blob and keeps its index.
	q1, err := Push(bg, reg+"/delta/unindexed:1", []string{dir1}, PushOptions{NoChunkIndex: true})
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if _, err := Pull(bg, q1.Ref, t.TempDir(), PullOptions{CacheDir: cache}); err != nil {
		t.Fatal(err)
	}
	out = t.TempDir()
	r, err = Pull(bg, p2.Ref, out, PullOptions{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got := fileSum(t, filepath.Join(out, "w.bin")); got != sum2 {
		t.Fatalf("unindexed cache: wrote %s, want %s", got, sum2)
	}
	if r.DownloadedBytes > 3<<20 || len(r.Deltas) != 1 || r.Deltas[0].Fallback != "" {
		t.Errorf("unindexed cache: downloaded %d, delta %+v", r.DownloadedBytes, r.Deltas)
	}
	if _, err := os.Stat(filepath.Join(cache, "chunks", "sha256", strings.TrimPrefix(q1.Files[0].Digest, "sha256:"))); err != nil {
		t.Errorf("the chunked blob's index is not kept: %v", err)
	}
}

// TestDeltaFallbacks: whatever goes wrong with the delta, the file pulled
// is the right one: the layer is downloaded whole and verified.
func TestDeltaFallbacks(t *testing.T) {
	const size, edit = 24 << 20, 1 << 20
	dir1, dir2, _, sum2 := writeVersions(t, "w.bin", size, edit)

	type fault struct {
		name string
		// wrap changes the registry's answers.
		wrap func(http.Handler) http.Handler
		// index replaces the second version's chunk index, given the chunks
		// of both versions.
		index func(l1, l2 *LayerChunks) *LayerChunks
		// local damages the cache's local index of the first version.
		local    func(b []byte) []byte
		fallback string // in the delta's Fallback; "" when rebuilt
		maxDown  int64
	}
	stripRange := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Del("Range")
			h.ServeHTTP(w, r)
		})
	}
	corruptRanges := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") == "" {
				h.ServeHTTP(w, r)
				return
			}
			h.ServeHTTP(&rangeFlipWriter{ResponseWriter: w}, r)
		})
	}
	cases := []fault{
		{name: "no chunk index", index: func(l1, l2 *LayerChunks) *LayerChunks { return nil }, fallback: "no chunk index", maxDown: size + size/10},
		{name: "registry strips Range", wrap: stripRange, fallback: "ignores Range", maxDown: size + size/10},
		{name: "range bytes corrupted", wrap: corruptRanges, fallback: "does not match the chunk index", maxDown: 2 * size},
		{name: "index lists the old chunks", index: func(l1, l2 *LayerChunks) *LayerChunks {
			// Valid and the right size, but the first version's chunks: the
			// rebuilt file is the old one, which the layer digest refuses.
			return &LayerChunks{Digest: l2.Digest, Size: l1.Size, Chunks: l1.Chunks}
		}, fallback: "rebuilt blob is not", maxDown: size + size/10},
		{name: "index chunk digests wrong", index: func(l1, l2 *LayerChunks) *LayerChunks {
			out := *l2
			out.Chunks = append([]IndexChunk(nil), l2.Chunks...)
			for i := range out.Chunks {
				if i%2 == 1 {
					out.Chunks[i].Digest = l1.Chunks[(i+1)%len(l1.Chunks)].Digest
				}
			}
			return &out
		}, fallback: "does not match the chunk index", maxDown: 2 * size},
		{name: "local index damaged", local: func(b []byte) []byte {
			var l LayerChunks
			json.Unmarshal(b, &l)
			// Same chunk digests, sizes shifted: every offset after the
			// first chunk is wrong.
			l.Chunks[0].Size--
			l.Chunks[1].Size++
			nb, _ := json.Marshal(l)
			return nb
		}, fallback: "", maxDown: size + size/10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t, tc.wrap)
			p1, err := Push(bg, reg+"/fault/m:1", []string{dir1}, PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			po := PushOptions{NoChunkIndex: tc.index != nil}
			p2, err := Push(bg, reg+"/fault/m:2", []string{dir2}, po)
			if err != nil {
				t.Fatal(err)
			}
			if tc.index != nil {
				l1, err := chunkFile(bg, filepath.Join(dir1, "w.bin"))
				if err != nil {
					t.Fatal(err)
				}
				l2, err := chunkFile(bg, filepath.Join(dir2, "w.bin"))
				if err != nil {
					t.Fatal(err)
				}
				if l := tc.index(l1, l2); l != nil {
					pushIndex(t, reg, "fault/m", p2.Digest, *l)
				}
			}
			cache := t.TempDir()
			if _, err := Pull(bg, p1.Ref, t.TempDir(), PullOptions{CacheDir: cache}); err != nil {
				t.Fatal(err)
			}
			if tc.local != nil {
				h := strings.TrimPrefix(p1.Files[0].Digest, "sha256:")
				p := filepath.Join(cache, "chunks", "sha256", h)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tc.local(b), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := t.TempDir()
			r, err := Pull(bg, p2.Ref, out, PullOptions{CacheDir: cache})
			if err != nil {
				t.Fatal(err)
			}
			if got := fileSum(t, filepath.Join(out, "w.bin")); got != sum2 {
				t.Fatalf("wrote %s, want %s", got, sum2)
			}
			if len(r.Deltas) != 1 {
				t.Fatalf("delta %+v", r.Deltas)
			}
			ds := r.Deltas[0]
			t.Logf("downloaded %d, reused %d, delta %+v", r.DownloadedBytes, r.ReusedBytes, ds)
			if tc.fallback == "" && ds.Fallback != "" || !strings.Contains(ds.Fallback, tc.fallback) {
				t.Errorf("fallback %q, want %q", ds.Fallback, tc.fallback)
			}
			if r.DownloadedBytes > tc.maxDown {
				t.Errorf("downloaded %d bytes, want ≤ %d", r.DownloadedBytes, tc.maxDown)
			}
			if r.DownloadedBytes+r.ReusedBytes < size {
				t.Errorf("downloaded %d + reused %d < %d", r.DownloadedBytes, r.ReusedBytes, size)
			}
		})
	}
}

// pushIndex attaches a chunk index of one layer to the manifest digest.
func pushIndex(t *testing.T, reg, repo, digest string, l LayerChunks) {
	t.Helper()
	r, err := name.NewRepository(reg+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	c, err := newRepoClient(bg, r, Options{PlainHTTP: true}, true)
	if err != nil {
		t.Fatal(err)
	}
	b, mt, h, err := c.getManifest(bg, digest)
	if err != nil {
		t.Fatal(err)
	}
	subject := v1.Descriptor{MediaType: types.MediaType(mt), Digest: h, Size: int64(len(b))}
	if _, err := pushChunkIndex(bg, c, subject, []LayerChunks{l}); err != nil {
		t.Fatal(err)
	}
}

// rangeFlipWriter flips a bit in the first byte of every write of a body.
type rangeFlipWriter struct {
	http.ResponseWriter
}

func (w *rangeFlipWriter) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c := bytes.Clone(b)
	c[0] ^= 1
	return w.ResponseWriter.Write(c)
}

func FuzzDecodeChunkIndex(f *testing.F) {
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	ok := ChunkIndex{MediaType: ArtifactTypeChunkIndex, Chunker: cdc.Params(), Layers: []LayerChunks{
		{Digest: d('a'), Size: 300, Chunks: []IndexChunk{{Size: 100, Digest: d('b')}, {Size: 200, Digest: d('c')}}},
		{Digest: d('d'), Size: 0},
	}}
	b, _ := json.Marshal(ok)
	f.Add(b)
	f.Add([]byte(`{"mediaType":"application/vnd.cairn.chunkindex.v1+json","chunker":"` + cdc.Params() + `","layers":[{"digest":"` + d('a') + `","size":5,"chunks":[{"size":-5,"digest":"` + d('b') + `"},{"size":10,"digest":"` + d('c') + `"}]}]}`))
	f.Add([]byte(`{"mediaType":"application/vnd.cairn.chunkindex.v1+json","chunker":"other","layers":[]}`))
	f.Add([]byte(`{"layers":[{"digest":"sha256:zz","size":1e30}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := DecodeChunkIndex(b)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, l := range ix.Layers {
			if seen[l.Digest] {
				t.Fatalf("layer %s twice", l.Digest)
			}
			seen[l.Digest] = true
			var sum int64
			for _, c := range l.Chunks {
				if c.Size <= 0 || !reDigest.MatchString(c.Digest) {
					t.Fatalf("bad chunk %+v accepted", c)
				}
				sum += c.Size
			}
			if sum != l.Size {
				t.Fatalf("chunks add up to %d, size %d", sum, l.Size)
			}
		}
		// What decodes encodes and decodes again to the same.
		nb, err := json.Marshal(ix)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeChunkIndex(nb)
		if err != nil {
			t.Fatalf("re-encoded index refused: %v", err)
		}
		if len(again.Layers) != len(ix.Layers) {
			t.Fatal("round trip changed the layers")
		}
	})
}
