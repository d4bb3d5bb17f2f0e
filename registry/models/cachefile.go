package models

import (
	"fmt"
	"io"
)

// readCacheEntry reads the cache entry at path when it is a regular file of
// at most max bytes. It neither follows a symlink nor blocks on a FIFO or
// device, and reads at most max+1 bytes whatever the file claims, so a
// hostile entry (a FIFO, a link to /dev/zero) is a quick miss.
func readCacheEntry(path string, max int) ([]byte, error) {
	f, err := openCacheEntry(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("cache entry %s: not a regular file", path)
	}
	if fi.Size() > int64(max) {
		return nil, fmt.Errorf("cache entry %s: %d bytes, over %d", path, fi.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, fmt.Errorf("cache entry %s: over %d bytes", path, max)
	}
	return b, nil
}
