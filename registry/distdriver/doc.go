// Package distdriver holds cairn's CNCF Distribution storage drivers for
// the built-in registry: a folder (the layout of Distribution's filesystem
// driver) and an S3 bucket through minio-go (the keys of its s3-aws
// driver), so data written by either is read by the other. Distribution's
// own drivers wrap every call in OpenTelemetry spans, and its s3-aws driver
// links aws-sdk-go v1 (out of support): together about 170 packages whose
// initialisers every cairn command paid for at start, whatever it did.
package distdriver
