package agent

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/models"
)

// writeWeights writes size random bytes of seed to dir/name, with edit bytes
// in the middle from seed+1 when edit > 0, and returns the digest.
func writeWeights(t *testing.T, dir, name string, size, edit int64) string {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	base, other := rand.NewChaCha8([32]byte{3}), rand.NewChaCha8([32]byte{4})
	mid := (size - edit) / 2
	buf := make([]byte, 1<<16)
	for off := int64(0); off < size; off += int64(len(buf)) {
		base.Read(buf)
		if edit > 0 && off >= mid && off < mid+edit {
			other.Read(buf) // mid and edit are multiples of 64 KiB here
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

func sumFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// TestUpdateDownloadsOnlyChangedChunks: the agent updates a 256 MiB weight
// file of which 16 MiB changed (in the middle) by fetching ≤ 24 MiB, using
// the previous version's blob in its layer cache, and logs the figures.
// Against Debian's docker-registry when CAIRN_TEST_REGISTRY is set, else
// the in-process registry.
func TestUpdateDownloadsOnlyChangedChunks(t *testing.T) {
	reg := os.Getenv(testenv.Registry)
	repo := "models/delta"
	if reg == "" {
		reg = newRegistry(t, 0)
	} else {
		repo += strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	const size, edit = 256 << 20, 16 << 20
	var digests [2]string
	var pushed [2]fleet.DesiredModel
	for i, e := range []int64{0, edit} {
		dir := t.TempDir()
		digests[i] = writeWeights(t, dir, "model.safetensors", size, e)
		os.WriteFile(filepath.Join(dir, "ok"), nil, 0o644)
		v := strconv.Itoa(i + 1)
		res, err := models.Push(bg, reg+"/"+repo+":"+v, []string{filepath.Join(dir, "model.safetensors"), filepath.Join(dir, "ok")},
			models.PushOptions{Options: models.Options{PlainHTTP: true}, Name: "demo", Version: v})
		if err != nil {
			t.Fatal(err)
		}
		if res.ChunkIndex == "" {
			t.Fatalf("no chunk index pushed: %v", res.Warnings)
		}
		pushed[i] = fleet.DesiredModel{Release: "demo", Model: "demo", Version: v, Artifact: res.Ref, Digest: res.Digest, PlainHTTP: true,
			Runtime: fleet.Runtime{HealthCheck: healthExec("ok")}}
	}
	var mu sync.Mutex
	var lines []string
	logf := func(format string, args ...any) {
		mu.Lock()
		lines = append(lines, fmt.Sprintf(format, args...))
		mu.Unlock()
		t.Logf(format, args...)
	}
	root := t.TempDir()
	a := newTestAgent(t, root, newMemAPI(), func(c *Config) { c.Logf = logf })
	pulled := regexp.MustCompile(`agent: pulled (\S+): downloaded (\d+) bytes, reused (\d+) bytes`)
	figures := func(dm fleet.DesiredModel) (down, reused int64, line string) {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range lines {
			if m := pulled.FindStringSubmatch(l); m != nil && m[1] == dm.Artifact {
				down, _ = strconv.ParseInt(m[2], 10, 64)
				reused, _ = strconv.ParseInt(m[3], 10, 64)
				return down, reused, l
			}
		}
		t.Fatalf("no pull logged for %s", dm.Artifact)
		return 0, 0, ""
	}
	for i, dm := range pushed {
		start := time.Now()
		if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{dm}}); err != nil {
			t.Fatal(err)
		}
		wantActive(t, root, dm.Digest)
		if got := sumFile(t, filepath.Join(root, "models", "demo", "current", "model.safetensors")); got != digests[i] {
			t.Fatalf("version %d: active file %s, want %s", i+1, got, digests[i])
		}
		down, reused, line := figures(dm)
		t.Logf("version %d installed in %s: %.1f MiB downloaded, %.1f MiB reused", i+1, time.Since(start).Round(time.Millisecond),
			float64(down)/(1<<20), float64(reused)/(1<<20))
		if i == 1 {
			if down > 24<<20 {
				t.Errorf("update downloaded %d bytes, want ≤ 24 MiB", down)
			}
			if !strings.Contains(line, "model.safetensors rebuilt from an earlier version") {
				t.Errorf("log line %q", line)
			}
		}
	}
	// Collection after the install keeps the chunk index of cached blobs
	// only.
	idx, _ := os.ReadDir(filepath.Join(root, "cache", "chunks", "sha256"))
	for _, e := range idx {
		if _, err := os.Stat(filepath.Join(root, "cache", "blobs", "sha256", e.Name())); err != nil {
			t.Errorf("chunk index %s left without its blob", e.Name())
		}
	}
	if len(idx) != 2 {
		t.Errorf("%d chunk indexes in the cache, want the two versions'", len(idx))
	}
}

// TestCollectKeepsDeltaRebuildWhileBusy: a delta rebuild left by a killed
// pull (its file and journal) stays in the cache, whatever the budget, while
// an install is pending, and goes with it otherwise.
func TestCollectKeepsDeltaRebuildWhileBusy(t *testing.T) {
	cache := t.TempDir()
	dir := filepath.Join(cache, "blobs", "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hx := strings.Repeat("d", 64)
	names := []string{hx + ".partial.delta", hx + ".partial.delta.journal"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), make([]byte, 4096), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := &PullFetcher{CacheDir: cache}
	for _, busy := range []bool{true, false} {
		if _, err := p.Collect(nil, busy, 1); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			_, err := os.Stat(filepath.Join(dir, n))
			if busy && err != nil {
				t.Errorf("busy: %s removed", n)
			}
			if !busy && err == nil {
				t.Errorf("not busy: %s kept", n)
			}
		}
	}
}
