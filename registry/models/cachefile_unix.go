//go:build unix

package models

import (
	"os"
	"syscall"
)

// openCacheEntry opens a cache entry for reading without following a
// symlink and without blocking on a FIFO (O_NONBLOCK, then cleared).
func openCacheEntry(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
