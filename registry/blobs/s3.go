package blobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a Store in an S3 bucket (AWS, MinIO, Ceph…) under a key prefix.
// S3 has no cheap put-if-absent, so Put stats first; two writers racing on
// one key write identical content, which is harmless. The digest is checked
// while the body streams, so a mismatch aborts the upload before the object
// exists.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string // "" or ends with "/"
}

var _ Store = (*S3)(nil)

// S3Options configure NewS3.
type S3Options struct {
	Endpoint  string // host:port; default s3.amazonaws.com
	Insecure  bool   // plain HTTP
	Region    string
	AccessKey string
	SecretKey string
}

func openS3(ctx context.Context, u *url.URL) (Store, error) {
	q := u.Query()
	opts := S3Options{
		Endpoint:  q.Get("endpoint"),
		Region:    q.Get("region"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
	}
	switch q.Get("insecure") {
	case "1", "true", "yes":
		opts.Insecure = true
	}
	if u.Host == "" {
		return nil, fmt.Errorf("store URL %q: missing bucket (s3://bucket/prefix)", u.String())
	}
	return NewS3(ctx, u.Host, strings.Trim(u.Path, "/"), opts)
}

// NewS3 opens bucket (creating it when missing) and keeps objects under prefix.
func NewS3(ctx context.Context, bucket, prefix string, o S3Options) (*S3, error) {
	if o.Endpoint == "" {
		o.Endpoint = "s3.amazonaws.com"
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	} else {
		creds = credentials.NewEnvAWS()
	}
	tr, err := minio.DefaultTransport(!o.Insecure)
	if err != nil {
		return nil, fmt.Errorf("open s3://%s: %w", bucket, err)
	}
	tr.MaxIdleConnsPerHost = 64
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     creds,
		Secure:    !o.Insecure,
		Region:    o.Region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("open s3://%s at %s: %w", bucket, o.Endpoint, err)
	}
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open s3://%s at %s: %w", bucket, o.Endpoint, err)
	}
	if !ok {
		err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{Region: o.Region})
		if err != nil {
			code := minio.ToErrorResponse(err).Code
			if code != "BucketAlreadyOwnedByYou" && code != "BucketAlreadyExists" {
				return nil, fmt.Errorf("create bucket %s at %s: %w", bucket, o.Endpoint, err)
			}
		}
	}
	if prefix != "" {
		prefix = strings.Trim(prefix, "/") + "/"
	}
	return &S3{client: c, bucket: bucket, prefix: prefix}, nil
}

func isNotFound(err error) bool {
	resp := minio.ToErrorResponse(err)
	return resp.StatusCode == http.StatusNotFound || resp.Code == "NoSuchKey"
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := validKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		if isNotFound(err) {
			return Info{}, fmt.Errorf("stat %s: %w", key, ErrNotFound)
		}
		return Info{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return Info{Key: key, Size: oi.Size}, nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := validKey(key); err != nil {
		return nil, err
	}
	if length == 0 {
		if _, err := s.Stat(ctx, key); err != nil {
			return nil, err
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		if err := opts.SetRange(off, off+length-1); err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
	case off > 0:
		if err := opts.SetRange(off, 0); err != nil {
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
	}
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	// GetObject is lazy: the first read sends the request, so read a little
	// here (one round trip, no extra HEAD) to report a missing key now.
	head := make([]byte, 32<<10)
	n, err := io.ReadFull(obj, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		obj.Close()
		if isNotFound(err) {
			return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
		}
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head[:n]), obj), obj}, nil
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, digest string) (bool, error) {
	if err := validKey(key); err != nil {
		return false, err
	}
	if _, err := s.Stat(ctx, key); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.PutBlind(ctx, key, r, size, digest); err != nil {
		return false, err
	}
	return true, nil
}

var _ BlindPutter = (*S3)(nil)

// PutBlind implements BlindPutter.
func (s *S3) PutBlind(ctx context.Context, key string, r io.Reader, size int64, digest string) error {
	if err := validKey(key); err != nil {
		return err
	}
	vr, err := newVerifyReader(r, size, digest)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	_, err = s.client.PutObject(ctx, s.bucket, s.prefix+key, vr, size, minio.PutObjectOptions{
		ContentType:          "application/octet-stream",
		DisableContentSha256: true,
	})
	if err != nil {
		if vr.failed != nil {
			return fmt.Errorf("put %s: %w", key, vr.failed)
		}
		return fmt.Errorf("put %s: %w", key, err)
	}
	if vr.failed != nil {
		return fmt.Errorf("put %s: %w", key, vr.failed)
	}
	return nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string, fn func(Info) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("list %s: %w", prefix, oi.Err)
		}
		if err := fn(Info{Key: strings.TrimPrefix(oi.Key, s.prefix), Size: oi.Size}); err != nil {
			return err
		}
	}
	return nil
}
