package models

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// minUnpack is what any tar layer may unpack to, whatever its ratio: a
// small layer of text files compresses well and harms nobody.
const minUnpack = 1 << 20

// unpackBudget is how many bytes a tar layer of compressed size n may
// unpack to (-1: no limit).
func (l Limits) unpackBudget(n int64) int64 {
	if l.MaxUnpackRatio < 0 {
		return -1
	}
	return max(int64(l.MaxUnpackRatio*float64(n)), minUnpack)
}

// limitedReader fails with ErrLimit once more than max bytes came out of r.
type limitedReader struct {
	r          io.Reader
	left, max  int64
	compressed int64
	ratio      float64
}

func (l *limitedReader) Read(b []byte) (int, error) {
	if l.left < 0 {
		return 0, l.err()
	}
	if int64(len(b)) > l.left+1 {
		b = b[:l.left+1]
	}
	n, err := l.r.Read(b)
	l.left -= int64(n)
	if l.left < 0 {
		return n, l.err()
	}
	return n, err
}

func (l *limitedReader) err() error {
	return fmt.Errorf("%w: the layer unpacks to more than %d bytes, %g times its %d compressed bytes (max unpack ratio %g, --max-unpack-ratio)",
		ErrLimit, l.max, float64(l.max)/float64(max(l.compressed, 1)), l.compressed, l.ratio)
}

// diskGuard watches the free space of the filesystems a pull writes to
// while sizes nobody declared (tar entries) are written.
type diskGuard struct {
	paths   []string // folders on the filesystems written to
	reserve int64
	mu      sync.Mutex
	since   atomic.Int64 // bytes written since the last look
}

// guardEvery is how many bytes are written between two looks at the disk.
const guardEvery = 8 << 20

// wrote accounts n bytes written and fails with ErrLimit when a
// filesystem's free space has fallen under the reserve.
func (g *diskGuard) wrote(n int) error {
	if g == nil || g.since.Add(int64(n)) < guardEvery {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.since.Load() < guardEvery {
		return nil
	}
	g.since.Store(0)
	for _, p := range g.paths {
		if free, _, ok := diskFree(p); ok && free < g.reserve {
			return fmt.Errorf("%w: free disk under %s fell to %d bytes, under the reserve of %d bytes (disk reserve)", ErrLimit, p, free, g.reserve)
		}
	}
	return nil
}

// guardedWriter is a writer accounted in a diskGuard.
type guardedWriter struct {
	w io.Writer
	g *diskGuard
}

func (w guardedWriter) Write(b []byte) (int, error) {
	n, err := w.w.Write(b)
	if err == nil {
		err = w.g.wrote(n)
	}
	return n, err
}

// checkDisk fails with ErrLimit when a folder's filesystem has less free
// space than the bytes to be written there plus the reserve. need maps
// folders to bytes; folders on the same filesystem add up.
func checkDisk(need map[string]int64, reserve int64) error {
	type fsNeed struct {
		path       string
		free, need int64
	}
	byFS := map[[2]int32]*fsNeed{}
	var order [][2]int32
	for p, n := range need {
		free, id, ok := diskFree(p)
		if !ok {
			continue
		}
		f := byFS[id]
		if f == nil {
			f = &fsNeed{path: p, free: free}
			byFS[id] = f
			order = append(order, id)
		}
		f.need += n
	}
	for _, id := range order {
		f := byFS[id]
		if f.free < f.need+reserve {
			return fmt.Errorf("%w: not enough free disk under %s: the pull needs %d bytes and keeps a reserve of %d (disk reserve), %d free",
				ErrLimit, f.path, f.need, reserve, f.free)
		}
	}
	return nil
}
