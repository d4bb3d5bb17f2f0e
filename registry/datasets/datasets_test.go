package datasets_test

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

func folderStore(t testing.TB) *blobs.Folder {
	s, err := blobs.NewFolder(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func minioStore(t testing.TB) blobs.Store {
	addr := testenv.Require(t, testenv.MinIO)
	t.Setenv("AWS_ACCESS_KEY_ID", testenv.Require(t, testenv.MinIOUser))
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.Require(t, testenv.MinIOPass))
	prefix := fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), rand.Int64())
	s, err := blobs.Open(context.Background(), "s3://cairn-datasets-test/"+url.PathEscape(prefix)+"?endpoint="+addr+"&insecure=1")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// randData returns n deterministic pseudo-random bytes.
func randData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func write(t testing.TB, root, rel string, data []byte, mode fs.FileMode) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// sampleTree builds a folder with small and chunked files, duplicates, an
// empty folder, a symlink and odd modes.
func sampleTree(t testing.TB) string {
	root := t.TempDir()
	write(t, root, "a.txt", []byte("hello\n"), 0o644)
	write(t, root, "dup/a-copy.txt", []byte("hello\n"), 0o600)
	write(t, root, "bin/run.sh", []byte("#!/bin/sh\necho hi\n"), 0o755)
	write(t, root, "empty.bin", nil, 0o644)
	write(t, root, "a-b/x", randData(1, 1000), 0o644)
	write(t, root, "big/data.bin", randData(2, 9<<20+123), 0o640)
	for i := range 40 {
		write(t, root, fmt.Sprintf("many/f%02d", i), randData(uint64(100+i), 1000+i*37), 0o644)
	}
	if err := os.MkdirAll(filepath.Join(root, "empty/dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a.txt", filepath.Join(root, "bin/link")); err != nil {
		t.Fatal(err)
	}
	return root
}

// snapshot describes a folder: path → type, mode, content or link target.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			out[rel] = "link " + target
		case info.IsDir():
			out[rel] = fmt.Sprintf("dir %o", info.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("file %o %s", info.Mode().Perm(), blobs.Digest(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	delete(out, ".")
	return out
}

func equalSnapshots(t *testing.T, a, b map[string]string) {
	t.Helper()
	for k, v := range a {
		if b[k] != v {
			t.Errorf("%s: want %q, got %q", k, v, b[k])
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: unexpected %q", k, v)
		}
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	for name, open := range map[string]func(testing.TB) blobs.Store{
		"folder": func(t testing.TB) blobs.Store { return folderStore(t) },
		"s3":     minioStore,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			src := sampleTree(t)
			res, err := datasets.Push(ctx, store, src, datasets.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(res.Digest, "sha256:") || res.Files != 46 {
				t.Fatalf("result %+v", res)
			}
			if res.UploadedBytes+res.ReusedBytes != res.Bytes || res.ReusedBytes != 6 {
				t.Fatalf("uploaded %d + reused %d != bytes %d (want 6 reused: the duplicate)", res.UploadedBytes, res.ReusedBytes, res.Bytes)
			}
			dst := filepath.Join(t.TempDir(), "out")
			if err := datasets.Pull(ctx, store, res.Digest, dst, datasets.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			equalSnapshots(t, snapshot(t, src), snapshot(t, dst))

			// Pulling again over the result (a resumed pull) fixes what differs.
			os.WriteFile(filepath.Join(dst, "a.txt"), []byte("HELLO\n"), 0o600)
			os.Remove(filepath.Join(dst, "many", "f07"))
			if err := datasets.Pull(ctx, store, res.Digest, dst, datasets.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			equalSnapshots(t, snapshot(t, src), snapshot(t, dst))

			// Unchanged re-push: same digest, nothing uploaded.
			again, err := datasets.Push(ctx, store, src, datasets.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if again.Digest != res.Digest || again.UploadedBytes != 0 || again.ReusedBytes != res.Bytes {
				t.Fatalf("re-push: %+v, first %+v", again, res)
			}
			tree, err := datasets.ReadTree(ctx, store, res.Digest)
			if err != nil {
				t.Fatal(err)
			}
			e, ok := tree.Lookup("big/data.bin")
			if !ok || len(e.Chunks) < 2 {
				t.Fatalf("big file not chunked: %+v", e)
			}
		})
	}
}

func TestSingleFilePush(t *testing.T) {
	ctx := context.Background()
	store := folderStore(t)
	dir := t.TempDir()
	write(t, dir, "only.csv", []byte("x\n1\n"), 0o644)
	res, err := datasets.Push(ctx, store, filepath.Join(dir, "only.csv"), datasets.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := datasets.ReadTree(ctx, store, res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Entries) != 1 || tree.Entries[0].Path != "only.csv" {
		t.Fatalf("tree %+v", tree.Entries)
	}
}

// TestEditInsideLargeFile: a 1 MiB edit inside a 64 MiB file uploads at
// most 2 MiB of blobs.
func TestEditInsideLargeFile(t *testing.T) {
	ctx := context.Background()
	store := folderStore(t)
	root := t.TempDir()
	data := randData(7, 64<<20)
	write(t, root, "big.bin", data, 0o644)
	first, err := datasets.Push(ctx, store, root, datasets.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range []int{20 << 20, 33<<20 + 12345, 50<<20 + 777} {
		copy(data[off:], randData(uint64(1000+i), 1<<20))
		write(t, root, "big.bin", data, 0o644)
		res, err := datasets.Push(ctx, store, root, datasets.PushOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("edit at %d: uploaded %d bytes (%.2f MiB)", off, res.UploadedBytes, float64(res.UploadedBytes)/(1<<20))
		if res.Digest == first.Digest {
			t.Fatal("digest unchanged after edit")
		}
		if res.UploadedBytes > 2<<20 {
			t.Errorf("edit at %d uploaded %d bytes, want at most 2 MiB", off, res.UploadedBytes)
		}
	}
}
