package blobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Folder is a Store in a local folder. Objects are written to a temporary
// file in their final folder, synced, then linked into place, so a reader
// never sees a partial object and an existing object is never replaced.
// Objects are read-only, readable by whom the root folder is (0444 in a
// 0755 root, 0400 in cairn serve's owner-only data folder).
type Folder struct {
	root    string
	dirMode fs.FileMode // of the folders objects are put in: the root's
	mode    fs.FileMode // of objects: the root's read bits
}

var _ Store = (*Folder)(nil)

// tmpPrefix marks files being written; List skips them.
const tmpPrefix = ".tmp-"

// NewFolder returns a store rooted at dir, creating dir when missing.
func NewFolder(dir string) (*Folder, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open folder store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open folder store %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("open folder store %s: %w", dir, err)
	}
	perm := fi.Mode().Perm()
	return &Folder{root: abs, dirMode: perm | 0o700, mode: perm & 0o444}, nil
}

// Root is the folder the store lives in.
func (f *Folder) Root() string { return f.root }

func (f *Folder) path(key string) (string, error) {
	if err := validKey(key); err != nil {
		return "", err
	}
	return filepath.Join(f.root, filepath.FromSlash(key)), nil
}

// Stat implements Store.
func (f *Folder) Stat(ctx context.Context, key string) (Info, error) {
	p, err := f.path(key)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return Info{Key: key, Size: fi.Size()}, nil
}

// Get implements Store.
func (f *Folder) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	p, err := f.path(key)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if off == 0 && length < 0 {
		return fh, nil
	}
	if off > 0 {
		if _, err := fh.Seek(off, io.SeekStart); err != nil {
			fh.Close()
			return nil, fmt.Errorf("get %s at %d: %w", key, off, err)
		}
	}
	if length < 0 {
		return fh, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(fh, length), fh}, nil
}

// Put implements Store.
func (f *Folder) Put(ctx context.Context, key string, r io.Reader, size int64, digest string) (bool, error) {
	p, err := f.path(key)
	if err != nil {
		return false, err
	}
	if _, err := os.Lstat(p); err == nil {
		return false, nil
	}
	vr, err := newVerifyReader(r, size, digest)
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, f.dirMode); err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op once linked and removed
	_, err = io.Copy(tmp, ctxReader{ctx, vr})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Chmod(tmpName, f.mode|0o400); err != nil {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	// A hard link never replaces an existing object; fall back to rename on
	// file systems without links (identical content, so a race is harmless).
	if err := os.Link(tmpName, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		if rerr := os.Rename(tmpName, p); rerr != nil {
			return false, fmt.Errorf("put %s: %w", key, rerr)
		}
	}
	syncDir(dir)
	return true, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// List implements Store.
func (f *Folder) List(ctx context.Context, prefix string, fn func(Info) error) error {
	// Walk the deepest folder the prefix fully names.
	start := f.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(f.root, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return filepath.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(f.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return fn(Info{Key: key, Size: fi.Size()})
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
