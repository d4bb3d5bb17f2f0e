//go:build unix

package models

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f, waiting for other processes (agent
// slots sharing one cache) to release theirs.
func lockFile(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			return err
		}
	}
}
