// Package s3driver is a CNCF Distribution storage driver on an S3 bucket
// (AWS, MinIO, Ceph…) through minio-go, the S3 client cairn's blob store
// already uses. It takes the place of Distribution's s3-aws driver, whose
// aws-sdk-go v1 (out of support) costs every cairn process its endpoint
// table at start-up, whatever the command.
package s3driver
