package datasets_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

// countingStore wraps a real store and counts blob requests.
type countingStore struct {
	blobs.Store
	blobCalls atomic.Int64
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64, digest string) (bool, error) {
	if strings.HasPrefix(key, "blobs/") {
		c.blobCalls.Add(1)
	}
	return c.Store.Put(ctx, key, r, size, digest)
}

func TestPushCache(t *testing.T) {
	defer datasets.SetRacyWindow(0)()
	ctx := context.Background()
	store := &countingStore{Store: folderStore(t)}
	src := sampleTree(t)
	opts := datasets.PushOptions{CacheDir: t.TempDir(), StoreID: "test-store"}
	first, err := datasets.Push(ctx, store, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	store.blobCalls.Store(0)
	again, err := datasets.Push(ctx, store, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != first.Digest || again.UploadedBytes != 0 || again.ReusedBytes != first.Bytes {
		t.Fatalf("cached re-push %+v, first %+v", again, first)
	}
	if n := store.blobCalls.Load(); n != 0 {
		t.Fatalf("cached re-push asked the store about %d blobs, want 0", n)
	}

	// Same size, mtime put back: ctime still tells the edit apart.
	p := filepath.Join(src, "a.txt")
	fi, _ := os.Stat(p)
	if err := os.WriteFile(p, []byte("HELLO\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	edited, err := datasets.Push(ctx, store, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if edited.Digest == first.Digest || edited.UploadedBytes != 6 {
		t.Fatalf("edit not seen: %+v", edited)
	}
	dst := t.TempDir()
	if err := datasets.Pull(ctx, store, edited.Digest, dst, datasets.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	equalSnapshots(t, snapshot(t, src), snapshot(t, dst))

	// A different store gets no help from the cache.
	other := &countingStore{Store: folderStore(t)}
	res, err := datasets.Push(ctx, other, src, datasets.PushOptions{CacheDir: opts.CacheDir, StoreID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if res.UploadedBytes != res.Bytes {
		t.Fatalf("push to a new store: %+v", res)
	}
}
