package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-dev/cairn/registry/blobs"
)

// blobHandler serves the built-in registry's blobs from a cairn blob store
// (a folder or S3), under the same content-addressed keys as datasets.
type blobHandler struct {
	st     blobs.Store
	tmpDir string // uploads are spooled here to learn their size
}

var (
	_ registry.BlobHandler     = (*blobHandler)(nil)
	_ registry.BlobStatHandler = (*blobHandler)(nil)
	_ registry.BlobPutHandler  = (*blobHandler)(nil)
)

// NewBlobHandler returns a registry blob handler over st; uploads are
// spooled in tmpDir ("" for the system default) before they are stored.
func NewBlobHandler(st blobs.Store, tmpDir string) registry.BlobHandler {
	return &blobHandler{st: st, tmpDir: tmpDir}
}

func mapNotFound(err error) error {
	if errors.Is(err, blobs.ErrNotFound) {
		return registry.ErrNotFound
	}
	return err
}

func (b *blobHandler) Stat(ctx context.Context, _ string, h v1.Hash) (int64, error) {
	info, err := b.st.Stat(ctx, blobs.BlobKey(h.String()))
	if err != nil {
		return 0, mapNotFound(err)
	}
	return info.Size, nil
}

func (b *blobHandler) Get(ctx context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	rc, err := b.st.Get(ctx, blobs.BlobKey(h.String()), 0, -1)
	if err != nil {
		return nil, mapNotFound(err)
	}
	return rc, nil
}

func (b *blobHandler) Put(ctx context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	key := blobs.BlobKey(h.String())
	if _, err := b.st.Stat(ctx, key); err == nil {
		_, err := io.Copy(io.Discard, rc) // the registry verifies the digest as it is read
		return err
	}
	tmp, err := os.CreateTemp(b.tmpDir, "upload-*")
	if err != nil {
		return fmt.Errorf("spool blob %s: %w", h, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := io.Copy(tmp, rc)
	if err != nil {
		return fmt.Errorf("spool blob %s: %w", h, err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("spool blob %s: %w", h, err)
	}
	if _, err := b.st.Put(ctx, key, tmp, n, h.String()); err != nil {
		return fmt.Errorf("store blob %s: %w", h, err)
	}
	return nil
}
