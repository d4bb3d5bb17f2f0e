package s3driver

import (
	"context"
	"fmt"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// Factory makes drivers from a Distribution storage section's parameters:
// bucket, rootdirectory, region, endpoint (host:port), insecure (bool),
// accesskey, secretkey, chunksize (bytes). Register it with Distribution's
// factory.Register(Name, Factory{}) before configuring a registry with it.
type Factory struct{}

// Create implements factory.StorageDriverFactory.
func (Factory) Create(_ context.Context, p map[string]any) (storagedriver.StorageDriver, error) {
	return FromParameters(p)
}

// FromParameters makes a driver from a storage section's parameters.
func FromParameters(p map[string]any) (*Driver, error) {
	var o Options
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
			return nil, fmt.Errorf("s3 storage driver: unknown parameter %q", k)
		}
		if !ok {
			return nil, fmt.Errorf("s3 storage driver: parameter %s: unexpected %T", k, v)
		}
	}
	return New(o)
}
