package models

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestCacheEntryNotRegular: a FIFO or a symlink to /dev/zero planted where
// the digest cache or the chunk index cache keeps an entry is a quick miss,
// not a read that blocks forever or grows without bound.
func TestCacheEntryNotRegular(t *testing.T) {
	plants := map[string]func(t *testing.T, at string){
		"fifo": func(t *testing.T, at string) {
			if err := syscall.Mkfifo(at, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"symlink to /dev/zero": func(t *testing.T, at string) {
			if err := os.Symlink("/dev/zero", at); err != nil {
				t.Fatal(err)
			}
		},
	}
	// within fails the test when f takes longer than a few seconds.
	within := func(t *testing.T, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("cache read still blocked after 5s")
		}
	}
	d := "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for name, plant := range plants {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "w.bin")
			if err := os.WriteFile(file, []byte("weights"), 0o644); err != nil {
				t.Fatal(err)
			}
			key := statKey(file)
			if key == "" {
				t.Fatal("no stat key")
			}
			cache := &digestCache{dir: t.TempDir()}
			cache.put(key, d, "reg/repo", nil)
			if e, _ := cache.get(file); e == nil || e.Digest != d {
				t.Fatalf("digest cache holds %+v after put", e)
			}

			// The chunk index entry.
			at := cache.chunksFile(file)
			if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
				t.Fatal(err)
			}
			plant(t, at)
			within(t, func() {
				if l := cache.chunks(file); l != nil {
					t.Errorf("chunk index %+v from a %s", l, name)
				}
			})

			// The digest entry.
			at = cache.file(key)
			if err := os.Remove(at); err != nil {
				t.Fatal(err)
			}
			plant(t, at)
			within(t, func() {
				if e, k := cache.get(file); e != nil || k != key {
					t.Errorf("digest entry %+v (key %q) from a %s", e, k, name)
				}
			})
		})
	}
}
