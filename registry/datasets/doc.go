// Package datasets owns content-addressed dataset versions: a version is a
// sorted, canonically encoded list of entries (a Tree) whose sha256 is the
// version's digest; file contents (whole, or split by content-defined
// chunking when large) live as blobs in a blobs.Store. It pushes, pulls and
// verifies trees, diffs two versions, and profiles CSV columns (the
// reference drift detection compares live data with).
package datasets
