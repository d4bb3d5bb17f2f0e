package s3driver_test

import (
	"context"
	"strings"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/s3driver"
)

// TestDriverSuite runs Distribution's own storage driver suite (the one
// its s3-aws, filesystem and inmemory drivers pass) against MinIO.
func TestDriverSuite(t *testing.T) {
	addr := testenv.Require(t, testenv.MinIO)
	user, pass := testenv.Require(t, testenv.MinIOUser), testenv.Require(t, testenv.MinIOPass)
	if testing.Short() {
		t.Skip("the suite writes about a GiB")
	}
	bucket := "cairn-s3driver-test"
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
		return s3driver.New(s3driver.Options{Bucket: bucket, RootDirectory: root, Endpoint: addr, Insecure: true,
			AccessKey: user, SecretKey: pass})
	}, false)
}
