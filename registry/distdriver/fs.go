package distdriver

// The folder driver is Distribution's filesystem driver (registry/storage/
// driver/filesystem, Apache 2.0) without its tracing wrapper: the same files
// under the root, the same writes.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// FSName is the folder driver's name in a storage configuration.
const FSName = "cairn-filesystem"

// fsMaxThreads bounds the folder calls in flight (Distribution's
// filesystem default): each may hold an OS thread in a blocking syscall.
const fsMaxThreads = 100

type fsDriver struct {
	root string
	sem  chan struct{}
}

// NewFS returns a driver keeping the registry's files under root.
func NewFS(root string) storagedriver.StorageDriver {
	return checked{&fsDriver{root: root, sem: make(chan struct{}, fsMaxThreads)}}
}

func (d *fsDriver) Name() string { return FSName }

func (d *fsDriver) enter() func() {
	d.sem <- struct{}{}
	return func() { <-d.sem }
}

func (d *fsDriver) full(p string) string { return filepath.Join(d.root, p) }

func (d *fsDriver) GetContent(ctx context.Context, p string) ([]byte, error) {
	r, err := d.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer d.enter()()
	return io.ReadAll(r)
}

// PutContent writes a temporary file, syncs it and renames it into place.
func (d *fsDriver) PutContent(ctx context.Context, p string, content []byte) error {
	var rnd [16]byte
	_, _ = rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.%s.tmp", p, hex.EncodeToString(rnd[:]))
	w, err := d.Writer(ctx, tmp, false)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, bytes.NewReader(content)); err != nil {
		return errors.Join(err, w.Cancel(ctx))
	}
	if err := w.Commit(ctx); err != nil {
		return err
	}
	if err := d.Move(ctx, tmp, p); err != nil {
		return errors.Join(err, d.Delete(ctx, tmp))
	}
	return syncDir(filepath.Dir(d.full(p)))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("sync dir: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

func (d *fsDriver) Reader(_ context.Context, p string, offset int64) (io.ReadCloser, error) {
	defer d.enter()()
	f, err := os.OpenFile(d.full(p), os.O_RDONLY, 0o644)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, storagedriver.PathNotFoundError{Path: p}
		}
		return nil, err
	}
	pos, err := f.Seek(offset, io.SeekStart)
	if err != nil {
		f.Close()
		return nil, err
	}
	if pos < offset {
		f.Close()
		return nil, storagedriver.InvalidOffsetError{Path: p, Offset: offset}
	}
	return f, nil
}

func (d *fsDriver) Writer(_ context.Context, p string, appendMode bool) (storagedriver.FileWriter, error) {
	defer d.enter()()
	full := d.full(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o777); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	var offset int64
	if appendMode {
		if offset, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, err
		}
	} else if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	return &fileWriter{file: f, size: offset, bw: bufio.NewWriter(f)}, nil
}

func (d *fsDriver) Stat(_ context.Context, p string) (storagedriver.FileInfo, error) {
	defer d.enter()()
	fi, err := os.Stat(d.full(p))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, storagedriver.PathNotFoundError{Path: p}
		}
		return nil, err
	}
	return fileInfo{FileInfo: fi, path: p}, nil
}

func (d *fsDriver) List(_ context.Context, p string) ([]string, error) {
	defer d.enter()()
	dir, err := os.Open(d.full(p))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, storagedriver.PathNotFoundError{Path: p}
		}
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(0)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(names))
	for _, n := range names {
		keys = append(keys, filepath.Join(p, n))
	}
	return keys, nil
}

func (d *fsDriver) Move(_ context.Context, src, dst string) error {
	defer d.enter()()
	source, dest := d.full(src), d.full(dst)
	if _, err := os.Stat(source); os.IsNotExist(err) {
		return storagedriver.PathNotFoundError{Path: src}
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o777); err != nil {
		return err
	}
	return os.Rename(source, dest)
}

func (d *fsDriver) Delete(_ context.Context, p string) error {
	defer d.enter()()
	full := d.full(p)
	if _, err := os.Stat(full); err != nil {
		if os.IsNotExist(err) {
			return storagedriver.PathNotFoundError{Path: p}
		}
		return err
	}
	return os.RemoveAll(full)
}

func (d *fsDriver) RedirectURL(*http.Request, string) (string, error) { return "", nil }

func (d *fsDriver) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	return storagedriver.WalkFallback(ctx, d, p, f, options...)
}

type fileInfo struct {
	os.FileInfo
	path string
}

func (fi fileInfo) Path() string { return fi.path }

func (fi fileInfo) Size() int64 {
	if fi.IsDir() {
		return 0
	}
	return fi.FileInfo.Size()
}

func (fi fileInfo) ModTime() time.Time { return fi.FileInfo.ModTime() }
func (fi fileInfo) IsDir() bool        { return fi.FileInfo.IsDir() }

type fileWriter struct {
	file                         *os.File
	size                         int64
	bw                           *bufio.Writer
	closed, committed, cancelled bool
}

func (fw *fileWriter) state() error {
	switch {
	case fw.closed:
		return errors.New("already closed")
	case fw.committed:
		return errors.New("already committed")
	case fw.cancelled:
		return errors.New("already cancelled")
	}
	return nil
}

func (fw *fileWriter) Write(p []byte) (int, error) {
	if err := fw.state(); err != nil {
		return 0, err
	}
	n, err := fw.bw.Write(p)
	fw.size += int64(n)
	return n, err
}

func (fw *fileWriter) Size() int64 { return fw.size }

func (fw *fileWriter) Close() (err error) {
	if fw.closed {
		return errors.New("already closed")
	}
	fw.closed = true
	defer func() { err = errors.Join(err, fw.file.Close()) }()
	if fw.committed {
		return nil
	}
	if err := fw.bw.Flush(); err != nil {
		return err
	}
	return fw.file.Sync()
}

func (fw *fileWriter) Cancel(context.Context) error {
	if fw.closed {
		return errors.New("already closed")
	}
	fw.cancelled, fw.closed = true, true
	_ = fw.file.Close()
	return os.Remove(fw.file.Name())
}

func (fw *fileWriter) Commit(context.Context) error {
	if err := fw.state(); err != nil {
		return err
	}
	if err := fw.bw.Flush(); err != nil {
		return err
	}
	if err := fw.file.Sync(); err != nil {
		return err
	}
	fw.committed = true
	return nil
}
