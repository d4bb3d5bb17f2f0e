package manifests

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
)

// Limits that make hostile input fail fast instead of exhausting memory.
const (
	// MaxFileSize is the largest manifest file read; larger files are refused
	// without being read past the limit.
	MaxFileSize = 8 << 20
	// MaxDepth is the deepest nesting of mappings and sequences in a document.
	MaxDepth = 100
	// MaxNodes bounds the YAML nodes of one file, counted before parsing and
	// again with every alias expanded (a "billion laughs" document).
	MaxNodes = 200_000
)

// LoadDir loads, validates and resolves the manifests of the repository
// checked out at dir. See Load.
func LoadDir(dir string) (*Snapshot, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load manifests: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("load manifests: %s is not a directory", dir)
	}
	return Load(os.DirFS(dir))
}

// Load decodes every manifest of the repository in fsys, validates it,
// resolves its references and returns the immutable snapshot.
//
// When fsys has a manifests/ folder, the manifests are the *.yaml and *.yml
// files anywhere under it; otherwise every *.yaml and *.yml file of fsys,
// except under a top-level policies/ folder (data of Rego policies). Hidden
// files and folders are skipped; symbolic links are refused.
//
// Problems with the manifests are returned together as an ErrorList, sorted
// by file and line; other errors (an unreadable folder) are returned alone.
func Load(fsys fs.FS) (*Snapshot, error) {
	files, errs, err := findManifests(fsys)
	if err != nil {
		return nil, err
	}
	var objs []*object
	for _, name := range files {
		data, err := readLimited(fsys, name)
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				errs = append(errs, e)
				continue
			}
			return nil, err
		}
		objs = append(objs, decodeFile(name, data, &errs)...)
	}
	snap := build(objs, &errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	snap.files = files
	return snap, nil
}

// findManifests lists the manifest files of fsys in lexical order.
func findManifests(fsys fs.FS) ([]string, ErrorList, error) {
	root := "."
	if fi, err := fs.Stat(fsys, "manifests"); err == nil && fi.IsDir() {
		root = "manifests"
	}
	var files []string
	var errs ErrorList
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk manifests: %w", err)
		}
		hidden := p != root && strings.HasPrefix(d.Name(), ".")
		if d.IsDir() {
			if hidden || (root == "." && p == "policies") {
				return fs.SkipDir
			}
			return nil
		}
		ext := path.Ext(p)
		if hidden || (ext != ".yaml" && ext != ".yml") {
			return nil
		}
		if !d.Type().IsRegular() {
			what := "not a regular file"
			if d.Type()&fs.ModeSymlink != 0 {
				what = "a symbolic link"
			}
			errs = append(errs, &Error{File: p, Line: 1, Message: what + "; manifests must be regular files"})
			return nil
		}
		files = append(files, p)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(files)
	return files, errs, nil
}

// readLimited reads a file of at most MaxFileSize bytes. A larger file is an
// *Error; an I/O failure is a plain error.
func readLimited(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > MaxFileSize {
		return nil, tooLarge(name)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(name)
	}
	return data, nil
}

func tooLarge(name string) *Error {
	return &Error{File: name, Line: 1, Message: fmt.Sprintf("file is larger than %d MiB; refusing to read it", MaxFileSize>>20)}
}
