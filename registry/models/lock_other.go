//go:build !unix

package models

import "os"

// lockFile is a no-op where flock is missing: concurrent pulls into one
// cache are then unsafe.
func lockFile(*os.File) error { return nil }
