// Package blobs owns the immutable, content-addressed blob stores cairn keeps
// dataset chunks and trees in: a small Store interface (Stat, ranged Get,
// verified put-if-absent, List) with a local-folder backend and an S3 backend
// (MinIO, AWS, Ceph), opened from a store URL with Open.
package blobs
