package models

import (
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

type countPatches struct{ n atomic.Int64 }

func (c *countPatches) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			c.n.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

func TestDigestCacheSkipsUnchangedFiles(t *testing.T) {
	var count countPatches
	reg := newRegistry(t, count.wrap)
	src := writeTree(t, map[string]string{"model.onnx": "weights v1", "README.md": "doc"})
	opts := PushOptions{DigestCache: t.TempDir(), Created: time.Unix(1e9, 0)} // uploads: 2 files + config

	first, err := Push(bg, reg+"/cache/m:1", []string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load(); n != 3 {
		t.Fatalf("first push: %d uploads, want 3", n)
	}
	// Unchanged files already in the repository: nothing is uploaded.
	again, err := Push(bg, reg+"/cache/m:2", []string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load(); n != 3 {
		t.Errorf("second push uploaded %d more blobs, want 0", n-3)
	}
	if len(again.Files) != 2 || again.Files[0].Digest != first.Files[0].Digest || again.Files[1].Digest != first.Files[1].Digest {
		t.Errorf("second push files %+v, first %+v", again.Files, first.Files)
	}
	// A rewritten file is uploaded again, even with the same size and mtime.
	time.Sleep(10 * time.Millisecond)
	f := filepath.Join(src, "model.onnx")
	fi, _ := os.Stat(f)
	if err := os.WriteFile(f, []byte("weights v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(f, fi.ModTime(), fi.ModTime())
	third, err := Push(bg, reg+"/cache/m:3", []string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := count.n.Load(); n != 5 { // model.onnx and the config
		t.Errorf("after rewriting model.onnx: %d uploads in all, want 5", n)
	}
	out := t.TempDir()
	if _, err := Pull(bg, third.Ref, out, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	equalTrees(t, readTree(t, out), map[string]string{"model.onnx": "weights v2", "README.md": "doc"})
	// Cross-repository mounts are tested against docker-registry
	// (TestIntegrationDigestCacheMount): the in-process registry shares blobs
	// between repositories.
}
