package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a temporary file that becomes path on Commit. Write to it like an
// *os.File; Abort (or a failed Commit) removes it. Abort after Commit does
// nothing, so `defer f.Abort()` is the usual pattern.
type File struct {
	*os.File
	// NoSync skips the syncs of file and folder, for content that is checked
	// again when read (a pulled file against its tree): the rename stays
	// atomic, but a crash may leave the old content or none.
	NoSync bool
	path   string
	perm   fs.FileMode
	done   bool
}

// Create opens a temporary file beside path (a dot name: .base.tmp-*), to be
// renamed over path with mode perm by Commit.
func Create(path string, perm fs.FileMode) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// Commit syncs the file, sets its mode, renames it over path and syncs the
// folder.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("write %s: already committed or aborted", f.path)
	}
	err := f.Chmod(f.perm)
	if err == nil && !f.NoSync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.Name())
		f.done = true
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	f.done = true
	if f.NoSync {
		return nil
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary file unless Commit has run.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// WriteFile writes b to path atomically with mode perm.
func WriteFile(path string, b []byte, perm fs.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// Symlink points link at target atomically: a temporary link renamed over the
// old one, then the folder synced. An empty target removes the link.
func Symlink(target, link string) error {
	if target == "" {
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove link %s: %w", link, err)
		}
		return SyncDir(filepath.Dir(link))
	}
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	tmp := link + ".tmp-link"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", link, err)
	}
	return SyncDir(filepath.Dir(link))
}

// SyncDir syncs a folder, so renames and new names in it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
