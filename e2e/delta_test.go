package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeModelVersion writes a 256 MiB weight file into a new folder: random
// bytes, with the 16 MiB in the middle from another stream when edited. It
// returns the folder and the file's digest.
func writeModelVersion(t *testing.T, edited bool) (string, string) {
	t.Helper()
	const size, edit = 256 << 20, 16 << 20
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	base, other := rand.NewChaCha8([32]byte{5}), rand.NewChaCha8([32]byte{6})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		base.Read(buf)
		if edited && off >= (size-edit)/2 && off < (size+edit)/2 {
			other.Read(buf)
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// TestDeltaPullBuiltinRegistry: against cairn's built-in registry (a real
// `cairn serve`), `cairn model push` two versions of a 256 MiB weight file
// with 16 MiB rewritten in the middle, then `cairn model pull --cache
// --format json` of the first and of the second: the second reports
// downloadedBytes ≤ 24 MiB and writes the file byte for byte.
func TestDeltaPullBuiltinRegistry(t *testing.T) {
	s := startRegServer(t)
	t.Setenv("CAIRN_TOKEN", regAdmin)
	work := t.TempDir()
	var refs [2]string
	var sums [2]string
	for i, edited := range []bool{false, true} {
		dir, sum := writeModelVersion(t, edited)
		sums[i] = sum
		start := time.Now()
		refs[i] = strings.TrimSpace(s.cairn("model", "push", "--digest-cache", "",
			s.addr+"/models/delta:"+[]string{"1", "2"}[i], dir))
		t.Logf("push %d: %s in %s", i+1, refs[i], time.Since(start).Round(time.Millisecond))
	}
	cache := filepath.Join(work, "cache")
	type summary struct {
		DownloadedBytes int64 `json:"downloadedBytes"`
		ReusedBytes     int64 `json:"reusedBytes"`
		Delta           []struct {
			Path     string `json:"path"`
			Ranges   int    `json:"ranges"`
			Fallback string `json:"fallback"`
		} `json:"delta"`
	}
	for i, ref := range refs {
		out := filepath.Join(work, "out", []string{"1", "2"}[i])
		start := time.Now()
		js := s.cairn("model", "pull", ref, "-o", out, "--cache", cache, "--format", "json")
		var sm summary
		if err := json.Unmarshal([]byte(js), &sm); err != nil {
			t.Fatalf("pull --format json: %v\n%s", err, js)
		}
		t.Logf("pull %d in %s: downloadedBytes %d (%.1f MiB), reusedBytes %d, delta %+v", i+1, time.Since(start).Round(time.Millisecond),
			sm.DownloadedBytes, float64(sm.DownloadedBytes)/(1<<20), sm.ReusedBytes, sm.Delta)
		f, err := os.Open(filepath.Join(out, "model.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != sums[i] {
			t.Fatalf("pull %d wrote %s, want %s", i+1, got, sums[i])
		}
		if i == 1 {
			if sm.DownloadedBytes > 24<<20 {
				t.Errorf("second pull: downloadedBytes %d, want ≤ 24 MiB", sm.DownloadedBytes)
			}
			if len(sm.Delta) != 1 || sm.Delta[0].Fallback != "" || sm.Delta[0].Ranges == 0 {
				t.Errorf("second pull: delta %+v, want the weight file rebuilt", sm.Delta)
			}
		}
	}
}
