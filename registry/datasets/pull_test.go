package datasets_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

// TestPullDamagedStore: a corrupted or missing blob fails the pull, naming
// the file, and leaves nothing at the file's final path.
func TestPullDamagedStore(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		damage  func(t *testing.T, p string)
		wantErr error
	}{
		{"corrupted small file", "data/b.csv", func(t *testing.T, p string) {
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, []byte("x,y\n9,9\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, blobs.ErrDigestMismatch},
		{"truncated chunk", "big.bin", func(t *testing.T, p string) {
			os.Chmod(p, 0o644)
			if err := os.Truncate(p, 1000); err != nil {
				t.Fatal(err)
			}
		}, blobs.ErrDigestMismatch},
		{"missing small file", "data/b.csv", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, blobs.ErrNotFound},
		{"missing chunk", "big.bin", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, blobs.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			store := folderStore(t)
			src := t.TempDir()
			write(t, src, "data/b.csv", []byte("x,y\n1,2\n"), 0o644)
			write(t, src, "big.bin", randData(3, 6<<20), 0o644)
			res, err := datasets.Push(ctx, store, src, datasets.PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tree, _ := datasets.ReadTree(ctx, store, res.Digest)
			e, _ := tree.Lookup(tc.file)
			d := e.Digest
			if len(e.Chunks) > 0 {
				d = e.Chunks[len(e.Chunks)/2].Digest
			}
			tc.damage(t, filepath.Join(store.Root(), filepath.FromSlash(blobs.BlobKey(d))))
			dst := t.TempDir()
			err = datasets.Pull(ctx, store, res.Digest, dst, datasets.PullOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.file) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("want an error naming %s wrapping %v, got %v", tc.file, tc.wantErr, err)
			}
			if _, err := os.Lstat(filepath.Join(dst, tc.file)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s exists after a failed pull", tc.file)
			}
			leftovers, _ := filepath.Glob(filepath.Join(dst, "*", ".*.tmp-*"))
			more, _ := filepath.Glob(filepath.Join(dst, ".*.tmp-*"))
			if len(leftovers)+len(more) > 0 {
				t.Fatalf("temporary files left: %v %v", leftovers, more)
			}
		})
	}
}

// putRawTree stores hand-written tree bytes (bypassing Encode's checks).
func putRawTree(t *testing.T, store blobs.Store, raw string) string {
	t.Helper()
	d := blobs.Digest([]byte(raw))
	if _, err := store.Put(context.Background(), blobs.TreeKey(d), strings.NewReader(raw), int64(len(raw)), d); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPullRefusesEscapes(t *testing.T) {
	content := []byte("pwned")
	cd := blobs.Digest(content)
	file := func(p string) string {
		return `{"digest":"` + cd + `","mode":420,"path":"` + p + `","size":5,"type":"file"}`
	}
	tests := []struct{ name, entries string }{
		{"dotdot", file("../evil")},
		{"dotdot inside", `{"mode":493,"path":"a","type":"dir"},` + file("a/../../evil")},
		{"absolute", file("/tmp/evil")},
		{"link out", `{"mode":511,"path":"l","target":"../outside","type":"symlink"}`},
		{"absolute link", `{"mode":511,"path":"l","target":"/etc","type":"symlink"}`},
		{"through a link", `{"mode":511,"path":"l","target":"d","type":"symlink"},` + file("l/x")},
		{"link chain", `{"mode":511,"path":"d","target":".","type":"symlink"},{"mode":511,"path":"s","target":"d/..","type":"symlink"}`},
		{"link chain, file under it", `{"mode":511,"path":"d","target":".","type":"symlink"},{"mode":511,"path":"s","target":"d/..","type":"symlink"},` + file("s/secret")},
		{"unsorted", file("b") + "," + file("a")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := folderStore(t)
			store.Put(context.Background(), blobs.BlobKey(cd), bytes.NewReader(content), 5, cd)
			d := putRawTree(t, store, `{"entries":[`+tc.entries+`],"version":1}`)
			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			err := datasets.Pull(context.Background(), store, d, dst, datasets.PullOptions{})
			if !errors.Is(err, datasets.ErrInvalidTree) {
				t.Fatalf("want ErrInvalidTree, got %v", err)
			}
			if _, err := os.Stat(dst); err == nil {
				t.Fatal("pull created the output folder for a refused tree")
			}
			if _, err := os.Stat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("escaped")
			}
		})
	}
}

func TestPushRefusesLinkOutOfRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "pw")); err != nil {
		t.Fatal(err)
	}
	_, err := datasets.Push(context.Background(), folderStore(t), root, datasets.PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "absolute target") {
		t.Fatalf("want refusal, got %v", err)
	}
}

// TestPushRefusesLinkChainOutOfRoot: links that each stay inside but lead
// out of root together ("d" -> ".", "s" -> "d/..") are refused at push,
// naming the link, since pull would refuse the tree.
func TestPushRefusesLinkChainOutOfRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink(".", filepath.Join(root, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d/..", filepath.Join(root, "s")); err != nil {
		t.Fatal(err)
	}
	_, err := datasets.Push(context.Background(), folderStore(t), root, datasets.PushOptions{})
	if err == nil || !strings.Contains(err.Error(), "symlink s:") || !strings.Contains(err.Error(), "escapes the root") {
		t.Fatalf("want refusal naming s, got %v", err)
	}
}

// TestRelativeLinksRoundTrip: links inside the root, also climbing with ".."
// or through another link, push and pull back and can be read through.
func TestRelativeLinksRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	write(t, src, "v2/model.bin", []byte("weights"), 0o644)
	write(t, src, "c", []byte("see"), 0o644)
	os.MkdirAll(filepath.Join(src, "a"), 0o755)
	for link, target := range map[string]string{"latest": "v2/model.bin", "a/b": "../c", "cur": "v2", "m": "cur/../v2/model.bin"} {
		if err := os.Symlink(target, filepath.Join(src, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
	store := folderStore(t)
	res, err := datasets.Push(ctx, store, src, datasets.PushOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	if err := datasets.Pull(ctx, store, res.Digest, dst, datasets.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for link, want := range map[string]string{"latest": "weights", "a/b": "see", "m": "weights"} {
		b, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(link)))
		if err != nil || string(b) != want {
			t.Errorf("read %s: %q, %v; want %q", link, b, err, want)
		}
	}
}

func TestDiff(t *testing.T) {
	f := func(p, d string, size int64) datasets.Entry {
		return datasets.Entry{Path: p, Type: datasets.TypeFile, Mode: 0o644, Digest: d, Size: size}
	}
	a := &datasets.Tree{Version: 1, Entries: []datasets.Entry{f("keep", "sha256:1", 1), f("mod", "sha256:2", 2), f("old", "sha256:3", 3)}}
	b := &datasets.Tree{Version: 1, Entries: []datasets.Entry{f("keep", "sha256:1", 1), f("mod", "sha256:4", 5), f("new", "sha256:5", 7)}}
	got := datasets.Diff(a, b)
	want := datasets.Changes{
		{Kind: datasets.Changed, Path: "mod", Type: "file", OldSize: 2, NewSize: 5},
		{Kind: datasets.Added, Path: "new", Type: "file", NewSize: 7},
		{Kind: datasets.Removed, Path: "old", Type: "file", OldSize: 3},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("change %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if len(datasets.Diff(a, a)) != 0 {
		t.Error("a tree differs from itself")
	}
}
