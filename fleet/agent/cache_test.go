package agent

import (
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

func dirBytes(t *testing.T, dir string) (n int64) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// After 20 versions the layer cache holds the blobs of the active and
// previous models plus at most the budget (default: twice the largest
// model), and no partial slot of a digest no longer desired is left.
func TestCacheBoundedAfterTwentyVersions(t *testing.T) {
	reg := newRegistry(t, 0)
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	const size = 64 << 10
	var sizes []int64
	for v := 1; v <= 20; v++ {
		weights := make([]byte, size+v*1024)
		rand.Read(weights)
		dm := pushModel(t, reg, fmt.Sprint(v), map[string]string{"model.onnx": string(weights), "config.json": fmt.Sprintf(`{"v":%d}`, v)})
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		wantActive(t, root, dm.Digest)
		sizes = append(sizes, int64(len(weights)))
	}
	cache := dirBytes(t, filepath.Join(root, "cache", "blobs"))
	largest := sizes[len(sizes)-1] + 16
	// Active and previous models, plus the budget.
	limit := sizes[19] + sizes[18] + 64 + 2*largest
	t.Logf("cache after 20 versions: %d bytes (limit %d; the 20 models total %d)", cache, limit, 20*size)
	if cache > limit {
		t.Fatalf("cache holds %d bytes, more than %d", cache, limit)
	}
	if slots, _ := os.ReadDir(filepath.Join(root, "models", "demo", "slots")); len(slots) != 2 {
		t.Fatalf("slots kept: %d, want current and previous", len(slots))
	}

	// An explicit budget of 0 bytes beyond the models in use.
	tight := newTestAgent(t, root, api, func(c *Config) { c.CacheMax = 1 })
	dm := pushModel(t, reg, "21", map[string]string{"model.onnx": strings.Repeat("x", size)})
	if err := tight.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
		t.Fatal(err)
	}
	if got := dirBytes(t, filepath.Join(root, "cache", "blobs")); got > int64(size)+sizes[19]+64 {
		t.Fatalf("cache with a 1-byte budget: %d bytes", got)
	}

	// A partial slot of a digest no longer desired is removed.
	stale := filepath.Join(root, "models", "demo", "slots", strings.Repeat("a", 64)+".partial")
	os.MkdirAll(stale, 0o755)
	os.WriteFile(filepath.Join(stale, "model.onnx"), []byte("half"), 0o644)
	if err := tight.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale partial slot left: %v", err)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "4K": 4096, "1.5M": 3 << 19, "2G": 2 << 30, "2GiB": 2 << 30, "3gb": 3 << 30, "1Ti": 1 << 40} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1X"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("ParseBytes(%q) accepted", bad)
		}
	}
}
