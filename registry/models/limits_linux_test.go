package models

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// smallDisk mounts a tmpfs of size bytes and inodes inodes under a new
// folder when the test runs as root and may mount; "" otherwise (the cases
// that need a small disk then run with the limits set low, or skip).
func smallDisk(t *testing.T, size int64, inodes int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,nr_inodes=%d", size, inodes)); err != nil {
		t.Logf("no tmpfs (%v): limits set low instead", err)
		return ""
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// bomb is a tar layer holding one file of n zero bytes, compressed.
func bomb(t *testing.T, n int64, compression string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var zw io.WriteCloser
	switch compression {
	case "gzip":
		zw, _ = gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	case "zstd":
		zw, _ = zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest))
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Name: "weights.bin", Mode: 0o644, Size: n, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(zeros)) {
		tw.Write(zeros[:min(left, int64(len(zeros)))])
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// manyFiles is a gzip tar layer of n empty files.
func manyFiles(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "f/", Mode: 0o755, Typeflag: tar.TypeDir})
	for i := 0; i < n; i++ {
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f/%07d", i), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// TestPullLimits: artifacts made to fill the disk, exhaust the inodes or
// expose a host file through a hard link fail with ErrLimit or
// ErrUnsafePath naming what was refused, and the pull leaves nothing behind
// (not even the output folder it made), on a small tmpfs when the machine
// allows it.
func TestPullLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bombs of hundreds of MiB")
	}
	const tarMT = "application/vnd.cncf.model.weight.v1.tar"
	disk := smallDisk(t, 128<<20, 150_000)
	zstdBomb := bomb(t, 512<<20, "zstd")
	gzipBomb := bomb(t, 64<<20, "gzip")
	t.Logf("zstd bomb %d bytes (512 MiB of zeros), gzip bomb %d bytes (64 MiB)", len(zstdBomb), len(gzipBomb))
	files := manyFiles(t, 300_000)
	t.Logf("300,000 empty files: %d bytes", len(files))
	big := bytes.Repeat([]byte("weights!"), 5<<20) // 40 MiB

	tarLayer := func(b []byte) []testLayer {
		return []testLayer{{mt: tarMT + "+" + map[byte]string{0x28: "zstd", 0x1f: "gzip"}[b[0]], data: b}}
	}
	plain := func(e ...tarEntry) []testLayer { return []testLayer{{mt: tarMT, data: mkTar(t, e, "")}} }
	cases := []struct {
		name     string
		layers   []testLayer
		lim      Limits
		needDisk bool // only on the small tmpfs (the disk must fill)
		want     error
		naming   string
	}{
		{name: "hard link to a symlink", layers: plain(
			tarEntry{name: "a/", typ: tar.TypeDir}, tarEntry{name: "a/b/", typ: tar.TypeDir},
			tarEntry{name: "a/b/s", typ: tar.TypeSymlink, link: "../../secret"},
			tarEntry{name: "weights.bin", typ: tar.TypeLink, link: "a/b/s"}),
			want: ErrUnsafePath, naming: `hard link "weights.bin" names "a/b/s"`},
		{name: "hard link to a folder", layers: plain(
			tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "weights.bin", typ: tar.TypeLink, link: "d"}),
			want: ErrUnsafePath, naming: `hard link "weights.bin" names "d"`},
		{name: "hard link to a file not extracted", layers: plain(
			tarEntry{name: "weights.bin", typ: tar.TypeLink, link: "host-file"}),
			want: ErrUnsafePath, naming: `"host-file"`},
		{name: "hard link through a symlink", layers: plain(
			tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "d/f", body: "x"},
			tarEntry{name: "l", typ: tar.TypeSymlink, link: "d"},
			tarEntry{name: "weights.bin", typ: tar.TypeLink, link: "l/f"}),
			want: ErrUnsafePath, naming: `"l/f"`},
		{name: "zstd bomb", layers: tarLayer(zstdBomb), want: ErrLimit, naming: "max unpack ratio 20"},
		{name: "gzip bomb", layers: tarLayer(gzipBomb), want: ErrLimit, naming: "max unpack ratio 20"},
		{name: "zstd bomb, no ratio: the disk reserve", layers: tarLayer(zstdBomb), needDisk: true,
			lim: Limits{MaxUnpackRatio: -1, DiskReserve: 16 << 20}, want: ErrLimit, naming: "reserve of 16777216 bytes"},
		{name: "300,000 files: the ratio", layers: tarLayer(files), want: ErrLimit, naming: "max unpack ratio"},
		{name: "300,000 files, no ratio: max files", layers: tarLayer(files), lim: Limits{MaxUnpackRatio: -1},
			want: ErrLimit, naming: "more than 100000 entries (max files"},
		{name: "declared sizes over the free disk", layers: []testLayer{{mt: MediaTypeModelWeightRaw, data: big,
			ann: map[string]string{AnnotationFilepath: "model.bin"}}}, lim: Limits{DiskReserve: 100 << 20},
			needDisk: true, want: ErrLimit, naming: "not enough free disk"},
		{name: "declared sizes over the reserve", layers: []testLayer{{mt: MediaTypeModelWeightRaw, data: big,
			ann: map[string]string{AnnotationFilepath: "model.bin"}}}, lim: Limits{DiskReserve: 1 << 60},
			want: ErrLimit, naming: "reserve of 1152921504606846976"},
	}
	reg := newRegistry(t, nil)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := disk
			if base == "" {
				if tc.needDisk {
					t.Skip("needs a small tmpfs (root)")
				}
				base = t.TempDir()
			}
			parent, err := os.MkdirTemp(base, "pull")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(parent)
			ref := pushArtifact(t, fmt.Sprintf("%s/limits/m:%d", reg, i), ArtifactTypeModelManifest, MediaTypeModelConfig,
				modelPackConfig("sha256:x"), tc.layers, nil)
			for _, withCache := range []bool{false, true} {
				dir := filepath.Join(parent, "out")
				opts := PullOptions{Limits: tc.lim}
				if withCache {
					opts.CacheDir = filepath.Join(parent, "cache")
				}
				_, err := Pull(bg, ref, dir, opts)
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.naming) {
					t.Fatalf("cache %v: got %v, want %v naming %q", withCache, err, tc.want, tc.naming)
				}
				if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
					ents, _ := os.ReadDir(dir)
					t.Errorf("cache %v: the failed pull left %s with %d entries", withCache, dir, len(ents))
				}
				if withCache {
					var kept []string
					filepath.Walk(filepath.Join(opts.CacheDir, "blobs"), func(p string, fi os.FileInfo, err error) error {
						if err == nil && fi.Mode().IsRegular() && fi.Size() > 1<<20 {
							kept = append(kept, p)
						}
						return nil
					})
					if len(kept) > 0 {
						t.Errorf("large blobs kept in the cache: %v", kept)
					}
				}
			}
		})
	}
}

// TestPullHardLinks: a hard link to a regular file extracted before it is
// made (the usual tar layout for identical files).
func TestPullHardLinks(t *testing.T) {
	reg := newRegistry(t, nil)
	layer := mkTar(t, []tarEntry{{name: "a/", typ: tar.TypeDir}, {name: "a/w.bin", body: "weights"},
		{name: "b.bin", typ: tar.TypeLink, link: "a/w.bin"}}, "gzip")
	ref := pushArtifact(t, reg+"/links/m:1", ArtifactTypeModelManifest, MediaTypeModelConfig, modelPackConfig("sha256:x"),
		[]testLayer{{mt: "application/vnd.cncf.model.weight.v1.tar+gzip", data: layer}}, nil)
	dir := t.TempDir()
	if _, err := Pull(bg, ref, dir, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	equalTrees(t, readTree(t, dir), map[string]string{"a/w.bin": "weights", "b.bin": "weights"})
}
