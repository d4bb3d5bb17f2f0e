// Package atomicfile writes files so that a crash at any point leaves either
// the old content or the new, never a part: a temporary file in the same
// folder, synced, renamed over the target, and the folder synced.
package atomicfile
