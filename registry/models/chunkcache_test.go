package models

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/registry/cdc"
)

// TestPushWarnsWhenFileChanges: a file touched while it is pushed (its
// ctime moves) gets no chunk index, and Push says so; the model is pushed.
func TestPushWarnsWhenFileChanges(t *testing.T) {
	reg := newRegistry(t, nil)
	dir, _, _, _ := writeVersions(t, "w.bin", DeltaThreshold+1<<20, 0)
	f := filepath.Join(dir, "w.bin")
	var once sync.Once
	opts := PushOptions{Options: Options{Progress: ProgressHooks{Progress: func(string, int64) {
		once.Do(func() {
			now := time.Now()
			if err := os.Chtimes(f, now, now); err != nil {
				t.Error(err)
			}
		})
	}}}}
	res, err := Push(bg, reg+"/changed/m:1", []string{dir}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.ChunkIndex != "" || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "w.bin changed while it was pushed") {
		t.Fatalf("chunk index %q, warnings %q; want none and one warning", res.ChunkIndex, res.Warnings)
	}
	// Unchanged since, the next push indexes it.
	res, err = Push(bg, reg+"/changed/m:2", []string{dir}, PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ChunkIndex == "" || len(res.Warnings) > 0 {
		t.Fatalf("chunk index %q, warnings %q", res.ChunkIndex, res.Warnings)
	}
}

// TestPushCachedChunkIndex: the digest cache keeps a large file's chunk
// index, and a push of the unchanged file takes it from there instead of
// chunking the file again; a rewritten file, or an entry that is damaged,
// for another version or for another digest, is chunked again (and the
// cache then holds the fresh index).
func TestPushCachedChunkIndex(t *testing.T) {
	zeros := "sha256:" + strings.Repeat("0", 64)
	// planted is the real index with its first chunk's digest replaced: a
	// push that uses the cache pushes it, one that chunks the file does not.
	planted := func(real *LayerChunks) *LayerChunks {
		p := *real
		p.Chunks = append([]IndexChunk(nil), real.Chunks...)
		p.Chunks[0].Digest = zeros
		return &p
	}
	plant := func(t *testing.T, cache *digestCache, file string, b []byte) {
		t.Helper()
		if err := os.WriteFile(cache.chunksFile(file), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	encode := func(t *testing.T, key string, l *LayerChunks) []byte {
		t.Helper()
		b, err := encodeChunkEntry(key, l)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		// before the second push: change the cache entry or the file
		prepare    func(t *testing.T, cache *digestCache, file string, real *LayerChunks)
		wantCached bool // the second push pushes the planted index
	}{
		{"hit", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			plant(t, cache, file, encode(t, statKey(file), planted(real)))
		}, true},
		{"rewritten file", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			plant(t, cache, file, encode(t, statKey(file), planted(real)))
			// Same bytes, size and mtime: only the ctime moves.
			fi, _ := os.Stat(file)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(file, fi.ModTime(), fi.ModTime())
		}, false},
		{"corrupt entry", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			b := encode(t, statKey(file), planted(real))
			plant(t, cache, file, b[:len(b)-7])
		}, false},
		{"garbage entry", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			plant(t, cache, file, []byte(`{"digest":"`+real.Digest+`"}`))
		}, false},
		{"entry of another version", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			plant(t, cache, file, encode(t, statKey(file)+"x", planted(real)))
		}, false},
		{"entry of another digest", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			p := planted(real)
			p.Digest = "sha256:" + strings.Repeat("1", 64)
			plant(t, cache, file, encode(t, statKey(file), p))
		}, false},
		{"entry that does not add up", func(t *testing.T, cache *digestCache, file string, real *LayerChunks) {
			p := planted(real)
			p.Chunks[0].Size++
			plant(t, cache, file, encode(t, statKey(file), p))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newRegistry(t, nil)
			dir, _, sum, _ := writeVersions(t, "w.bin", DeltaThreshold+1<<20, 0)
			file := filepath.Join(dir, "w.bin")
			cache := &digestCache{dir: t.TempDir()}
			opts := PushOptions{DigestCache: cache.dir}
			p1, err := Push(bg, reg+"/cached/m:1", []string{dir}, opts)
			if err != nil {
				t.Fatal(err)
			}
			ix1, err := FetchChunkIndex(bg, p1.Ref, Options{})
			if err != nil || ix1 == nil || len(ix1.Layers) != 1 {
				t.Fatalf("first push's chunk index: %v %v", ix1, err)
			}
			real := &ix1.Layers[0]
			if real.Digest != sum {
				t.Fatalf("index of layer %s, want %s", real.Digest, sum)
			}
			if got := cache.chunks(file); !reflect.DeepEqual(got, real) {
				t.Fatalf("cache after the first push holds %+v, want the pushed index", got)
			}
			tc.prepare(t, cache, file, real)

			p2, err := Push(bg, reg+"/cached/m:2", []string{dir}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(p2.Warnings) > 0 {
				t.Fatalf("warnings %q", p2.Warnings)
			}
			ix2, err := FetchChunkIndex(bg, p2.Ref, Options{})
			if err != nil || ix2 == nil || len(ix2.Layers) != 1 {
				t.Fatalf("second push's chunk index: %v %v", ix2, err)
			}
			want := real
			if tc.wantCached {
				want = planted(real)
			}
			if !reflect.DeepEqual(&ix2.Layers[0], want) {
				t.Errorf("second push's index (first chunk %s), want the %s one", ix2.Layers[0].Chunks[0].Digest,
					map[bool]string{true: "cached", false: "chunked"}[tc.wantCached])
			}
			if got := cache.chunks(file); !reflect.DeepEqual(got, want) {
				t.Errorf("cache after the second push holds another index than the pushed one")
			}
		})
	}
}

func TestChunkEntryRoundTrip(t *testing.T) {
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	l := &LayerChunks{Digest: d('a'), Size: cdc.MaxChunk + 5, Chunks: []IndexChunk{{Size: cdc.MaxChunk, Digest: d('b')}, {Size: 5, Digest: d('c')}}}
	b, err := encodeChunkEntry("key", l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeChunkEntry(b, "key")
	if err != nil || !reflect.DeepEqual(got, l) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, l)
	}
	if _, err := decodeChunkEntry(b, "other key"); err == nil {
		t.Error("entry of another version accepted")
	}
	// ~35 bytes a chunk, not JSON's ~90.
	if n := len(b) - len(chunkEntryMagic) - len(cdc.Params()) - 1 - 64; n > 2*(3+32)+4 {
		t.Errorf("%d bytes for 2 chunks", n)
	}
}

// FuzzDecodeChunkEntry: an entry the decoder accepts is a valid layer index
// and encodes back to the same bytes.
func FuzzDecodeChunkEntry(f *testing.F) {
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	good, _ := encodeChunkEntry("k", &LayerChunks{Digest: d('a'), Size: 300, Chunks: []IndexChunk{{Size: 100, Digest: d('b')}, {Size: 200, Digest: d('c')}}})
	f.Add(good)
	f.Add(good[:len(good)-1])
	empty, _ := encodeChunkEntry("k", &LayerChunks{Digest: d('a')})
	f.Add(empty)
	f.Add([]byte(chunkEntryMagic))
	// A chunk size of 131 written 0x83 0x81 0x00, longer than it needs.
	long, _ := encodeChunkEntry("k", &LayerChunks{Digest: d('a'), Size: 131, Chunks: []IndexChunk{{Size: 131, Digest: d('b')}}})
	at := len(long) - sha256.Size - 2
	f.Add(append(append(append([]byte(nil), long[:at]...), 0x83, 0x81, 0x00), long[at+2:]...))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decodeChunkEntry(b, "k")
		if err != nil {
			return
		}
		if err := l.validate(); err != nil {
			t.Fatalf("accepted an invalid index: %v", err)
		}
		again, err := encodeChunkEntry("k", l)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded entry differs")
		}
	})
}
