//go:build !unix

package models

import (
	"errors"
	"os"
)

// openCacheEntry opens a cache entry for reading unless it is a symlink or
// not a regular file (checked again on the open file by readCacheEntry).
func openCacheEntry(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return os.Open(path)
}
