package policies

import (
	"errors"
	"fmt"
	"io/fs"
)

// Dir is where a repository's policies live: the folder policies/ at its
// root, with its Rego files, their tests and data files. cairn plan, cairn
// policy test and serve's admission all read it through RepoFS.
const Dir = "policies"

// RepoFS returns the policies of the repository whose tree is repo: its Dir
// folder, or nil when it has none (only the built-in library applies).
func RepoFS(repo fs.FS) (fs.FS, error) {
	fi, err := fs.Stat(repo, Dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read %s/: %w", Dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%s is not a folder", Dir)
	}
	sub, err := fs.Sub(repo, Dir)
	if err != nil {
		return nil, fmt.Errorf("read %s/: %w", Dir, err)
	}
	return sub, nil
}
