//go:build !linux

package models

import "os"

// preallocate does nothing off Linux.
func preallocate(f *os.File, n int64) {}
