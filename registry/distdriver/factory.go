package distdriver

import (
	"context"
	"fmt"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
)

var registerOnce sync.Once

// Register registers both drivers with Distribution's driver factory (its
// storage configuration names drivers; handlers.NewApp makes its own), once
// whatever the number of calls. Their parameters:
//   - cairn-filesystem: rootdirectory;
//   - cairn-s3: bucket, rootdirectory, region, endpoint (host:port),
//     insecure (bool), accesskey, secretkey, chunksize (bytes).
func Register() {
	registerOnce.Do(func() {
		factory.Register(FSName, fsFactory{})
		factory.Register(S3Name, s3Factory{})
	})
}

type fsFactory struct{}

func (fsFactory) Create(_ context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	var root string
	for k, v := range p {
		var ok bool
		switch k {
		case "rootdirectory":
			root, ok = v.(string)
		default:
			return nil, fmt.Errorf("%s storage driver: unknown parameter %q", FSName, k)
		}
		if !ok {
			return nil, fmt.Errorf("%s storage driver: parameter %s: unexpected %T", FSName, k, v)
		}
	}
	if root == "" {
		return nil, fmt.Errorf("%s storage driver: no rootdirectory", FSName)
	}
	return NewFS(root), nil
}

type s3Factory struct{}

func (s3Factory) Create(_ context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	var o S3Options
	for k, v := range p {
		var ok bool
		switch k {
		case "bucket":
			o.Bucket, ok = v.(string)
		case "rootdirectory":
			o.RootDirectory, ok = v.(string)
		case "region":
			o.Region, ok = v.(string)
		case "endpoint":
			o.Endpoint, ok = v.(string)
		case "accesskey":
			o.AccessKey, ok = v.(string)
		case "secretkey":
			o.SecretKey, ok = v.(string)
		case "insecure":
			o.Insecure, ok = v.(bool)
		case "chunksize":
			o.ChunkSize, ok = v.(int)
		default:
			return nil, fmt.Errorf("%s storage driver: unknown parameter %q", S3Name, k)
		}
		if !ok {
			return nil, fmt.Errorf("%s storage driver: parameter %s: unexpected %T", S3Name, k, v)
		}
	}
	return NewS3(o)
}
