package models

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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
