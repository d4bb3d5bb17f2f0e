package datasets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/internal/atomicfile"
	"github.com/cairn-dev/cairn/registry/blobs"
)

// PullOptions configure Pull; the zero value is usable.
type PullOptions struct {
	// Workers bounds concurrent file downloads (default DefaultWorkers).
	Workers  int
	Progress Progress
	// Tree bounds the reading of the tree (entry limit, local copy).
	Tree TreeOptions
}

// Pull restores the version digest from store into dir (created when
// missing). Every byte is verified against its chunk and file digests; a
// file is written under a temporary name and renamed into place only once
// verified, so a failure leaves no partial file at its final path. Trees
// with absolute or ".." paths, or links leaving the root, are refused before
// anything is written.
func Pull(ctx context.Context, store blobs.Store, digest, dir string, opts PullOptions) error {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	t, err := OpenTree(ctx, store, digest, opts.Tree) // validates every path and link
	if err != nil {
		return err
	}
	defer t.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pull into %s: %w", dir, err)
	}
	opts.Progress.start(t.Files, t.Bytes)
	// Folders first, in order (parents before children), never through an
	// existing symlink.
	type folder struct {
		path string
		mode uint32
	}
	var folders []folder
	err = t.Walk(func(e Entry) error {
		if e.Type != TypeDir {
			return nil
		}
		folders = append(folders, folder{e.Path, e.Mode})
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		if err := os.Mkdir(p, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("pull %s: %w", e.Path, err)
			}
			fi, lerr := os.Lstat(p)
			if lerr != nil || !fi.IsDir() {
				return fmt.Errorf("pull %s: exists and is not a folder", e.Path)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers)
	werr := t.Walk(func(e Entry) error {
		p := filepath.Join(dir, filepath.FromSlash(e.Path))
		switch e.Type {
		case TypeFile:
			if gctx.Err() != nil {
				return gctx.Err()
			}
			g.Go(func() error {
				if err := pullFile(gctx, store, e, p, opts.Progress); err != nil {
					return fmt.Errorf("pull %s: %w", e.Path, err)
				}
				return nil
			})
		case TypeSymlink:
			if fi, err := os.Lstat(p); err == nil {
				if fi.IsDir() {
					return fmt.Errorf("pull %s: a folder is in the way of the link", e.Path)
				}
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("pull %s: %w", e.Path, err)
				}
			}
			if err := os.Symlink(filepath.FromSlash(e.Target), p); err != nil {
				return fmt.Errorf("pull %s: %w", e.Path, err)
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	// Folder modes last (children first) so read-only folders do not block writes.
	for i := len(folders) - 1; i >= 0; i-- {
		f := folders[i]
		if err := os.Chmod(filepath.Join(dir, filepath.FromSlash(f.path)), fs.FileMode(f.mode)); err != nil {
			return fmt.Errorf("pull %s: %w", f.path, err)
		}
	}
	return nil
}

// pullFile writes one file from its blobs to a temporary file next to
// final, verifying each chunk and the whole content, then renames it.
func pullFile(ctx context.Context, store blobs.Store, e Entry, final string, prog Progress) (err error) {
	if fi, err := os.Lstat(final); err == nil {
		if !fi.Mode().IsRegular() {
			return errors.New("something other than a file is in the way")
		}
		// A file already holding the right bytes (an earlier, interrupted
		// pull) is kept: pulling again resumes.
		if fi.Size() == e.Size && sameContent(final, e.Digest) {
			prog.bytes(e.Size)
			return os.Chmod(final, fs.FileMode(e.Mode))
		}
	}
	tmp, err := atomicfile.Create(final, fs.FileMode(e.Mode))
	if err != nil {
		return err
	}
	defer tmp.Abort()
	tmp.NoSync = true // as before: a pull checks every file against its tree
	whole := sha256.New()
	w := io.MultiWriter(tmp, whole, progressWriter(prog))
	if err := writeContent(ctx, store, e, w); err != nil {
		return err
	}
	if got := digest.FromHash(whole.Sum(nil)).String(); got != e.Digest {
		return fmt.Errorf("%w: content is %s, tree says %s", blobs.ErrDigestMismatch, got, e.Digest)
	}
	return tmp.Commit()
}

// prefetchDepth is how many chunks of one file are fetched ahead.
const prefetchDepth = 6

// writeContent writes the verified content of e to w: one streamed blob,
// or its chunks fetched prefetchDepth at a time and written in order.
func writeContent(ctx context.Context, store blobs.Store, e Entry, w io.Writer) error {
	if e.Chunks == nil {
		return copyBlob(ctx, store, Chunk{Digest: e.Digest, Size: e.Size}, w)
	}
	for _, c := range e.Chunks {
		if c.Size > MaxChunk { // not ours: stream one at a time, memory stays flat
			for _, c := range e.Chunks {
				if err := copyBlob(ctx, store, c, w); err != nil {
					return err
				}
			}
			return nil
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type fetched struct {
		data []byte
		err  error
	}
	results := make([]chan fetched, len(e.Chunks))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	sem := make(chan struct{}, prefetchDepth)
	go func() {
		for i, c := range e.Chunks {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				var buf bytes.Buffer
				buf.Grow(int(c.Size))
				err := copyBlob(ctx, store, c, &buf)
				results[i] <- fetched{buf.Bytes(), err}
			}()
		}
	}()
	for i := range e.Chunks {
		var r fetched
		select {
		case r = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		if _, err := w.Write(r.data); err != nil {
			return err
		}
		<-sem
	}
	return nil
}

func copyBlob(ctx context.Context, store blobs.Store, c Chunk, w io.Writer) error {
	rc, err := store.Get(ctx, blobs.BlobKey(c.Digest), 0, -1)
	if err != nil {
		return fmt.Errorf("blob %s: %w", c.Digest, err)
	}
	defer rc.Close()
	vr, err := blobs.NewVerifyReader(rc, c.Size, c.Digest)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, vr); err != nil {
		return fmt.Errorf("blob %s: %w", c.Digest, err)
	}
	return nil
}

type progressWriter Progress

func (p progressWriter) Write(b []byte) (int, error) {
	Progress(p).bytes(int64(len(b)))
	return len(b), nil
}

// sameContent reports whether the file at p hashes to digest.
func sameContent(p, digest string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return "sha256:"+hex.EncodeToString(h.Sum(nil)) == digest
}
