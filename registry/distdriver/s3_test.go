package distdriver_test

import (
	"context"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/distdriver"
)

// TestS3DriverSuite runs Distribution's own storage driver suite (the one
// its s3-aws, filesystem and inmemory drivers pass) against MinIO.
func TestS3DriverSuite(t *testing.T) {
	addr := testenv.Require(t, testenv.MinIO)
	user, pass := testenv.Require(t, testenv.MinIOUser), testenv.Require(t, testenv.MinIOPass)
	bucket := "cairn-distdriver-test"
	c, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, pass, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ok, err := c.BucketExists(ctx, bucket); err != nil {
		t.Fatal(err)
	} else if !ok {
		if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	root := "/" + strings.ToLower(t.Name()) + "/registry"
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) {
		return distdriver.NewS3(distdriver.S3Options{Bucket: bucket, RootDirectory: root, Endpoint: addr, Insecure: true,
			AccessKey: user, SecretKey: pass})
	}, false)
}

// TestFSDriverSuite runs the same suite against the folder driver.
func TestFSDriverSuite(t *testing.T) {
	root := t.TempDir()
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) { return distdriver.NewFS(root), nil }, false)
}
