package models

import "syscall"

// diskFree returns the bytes an unprivileged writer may still use on the
// filesystem of path and an identifier of that filesystem (ok false when
// unknown).
func diskFree(path string) (free int64, fsid [2]int32, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fsid, false
	}
	return int64(st.Bavail) * int64(st.Bsize), st.Fsid.X__val, true
}
