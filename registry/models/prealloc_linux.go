package models

import (
	"os"
	"syscall"
)

// fallocKeepSize is FALLOC_FL_KEEP_SIZE.
const fallocKeepSize = 0x1

// preallocate reserves n bytes of blocks for f past its end without
// changing its size (FALLOC_FL_KEEP_SIZE), so that a download still resumes
// from f's size. On ext4 the writes then land in extents allocated at once
// instead of going through delayed allocation block by block. Errors are
// ignored: a filesystem without fallocate is written as before.
func preallocate(f *os.File, n int64) {
	if n <= 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = syscall.Fallocate(int(fd), fallocKeepSize, 0, n) })
}
