package distdriver

// The driver follows Distribution's s3-aws driver (registry/storage/driver/
// s3-aws, Apache 2.0) call for call, so that a bucket written by one is read
// by the other: the same keys under the root directory, uploads as
// multipart uploads resumed by listing their parts, directories inferred
// from key prefixes.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Name is the S3 driver's name in a storage configuration.
const S3Name = "cairn-s3"

const (
	minChunkSize     = 5 << 20  // S3's smallest part but the last
	defaultChunkSize = 10 << 20 // as s3-aws
	listMax          = 1000
)

// S3Options configure NewS3.
type S3Options struct {
	Bucket        string
	RootDirectory string // key prefix, "/a/b" or ""
	Endpoint      string // host:port; default s3.amazonaws.com
	Insecure      bool   // plain HTTP
	Region        string
	// AccessKey and SecretKey; when empty, the AWS environment variables,
	// the shared credentials file, then the instance's IAM role.
	AccessKey, SecretKey string
	ChunkSize            int // bytes a part; default 10 MiB, at least 5 MiB
}

type s3Driver struct {
	c         minio.Core
	bucket    string
	root      string // key prefix without slashes at either end
	chunkSize int
	pool      sync.Pool // *bytes.Buffer of writers
}

// NewS3 returns a driver on o.Bucket, which must exist.
func NewS3(o S3Options) (storagedriver.StorageDriver, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3 storage driver: no bucket")
	}
	if o.Endpoint == "" {
		o.Endpoint = "s3.amazonaws.com"
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = defaultChunkSize
	}
	if o.ChunkSize < minChunkSize {
		return nil, fmt.Errorf("s3 storage driver: chunk size %d is below S3's %d", o.ChunkSize, minChunkSize)
	}
	var creds *credentials.Credentials
	if o.AccessKey != "" {
		creds = credentials.NewStaticV4(o.AccessKey, o.SecretKey, "")
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{}})
	}
	tr, err := minio.DefaultTransport(!o.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3 storage driver: %w", err)
	}
	tr.MaxIdleConnsPerHost = 64
	c, err := minio.NewCore(o.Endpoint, &minio.Options{
		Creds: creds, Secure: !o.Insecure, Region: o.Region, Transport: tr,
		BucketLookup: minio.BucketLookupPath, // as s3-aws's forcepathstyle
	})
	if err != nil {
		return nil, fmt.Errorf("s3 storage driver at %s: %w", o.Endpoint, err)
	}
	d := &s3Driver{c: *c, bucket: o.Bucket, root: strings.Trim(o.RootDirectory, "/"), chunkSize: o.ChunkSize}
	d.pool.New = func() any { return bytes.NewBuffer(make([]byte, 0, d.chunkSize+minChunkSize)) }
	return checked{d}, nil
}

func (d *s3Driver) Name() string { return S3Name }

// key is the object key of a driver path ("/docker/registry/…").
func (d *s3Driver) key(p string) string {
	if d.root == "" {
		return strings.TrimLeft(p, "/")
	}
	return d.root + p
}

// path is the driver path of an object key (or of a common prefix without
// its trailing slash).
func (d *s3Driver) path(key string) string {
	if d.root == "" {
		return "/" + key
	}
	return strings.TrimPrefix(key, d.root)
}

// dirPrefix is the key prefix of what lies under driver path p.
func (d *s3Driver) dirPrefix(p string) string {
	k := d.key(p)
	if k != "" && !strings.HasSuffix(k, "/") {
		k += "/"
	}
	return k
}

func notFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || r.Code == "NoSuchUpload" || r.StatusCode == http.StatusNotFound
}

func parseError(p string, err error) error {
	if err != nil && notFound(err) {
		return storagedriver.PathNotFoundError{Path: p, DriverName: S3Name}
	}
	return err
}

func (d *s3Driver) GetContent(ctx context.Context, p string) ([]byte, error) {
	r, err := d.Reader(ctx, p, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func (d *s3Driver) PutContent(ctx context.Context, p string, content []byte) error {
	_, err := d.c.PutObject(ctx, d.bucket, d.key(p), bytes.NewReader(content), int64(len(content)), "", "",
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	return parseError(p, err)
}

func (d *s3Driver) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, err
		}
	}
	body, _, _, err := d.c.GetObject(ctx, d.bucket, d.key(p), opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == "InvalidRange" {
			return io.NopCloser(bytes.NewReader(nil)), nil
		}
		return nil, parseError(p, err)
	}
	return body, nil
}

func (d *s3Driver) newUpload(ctx context.Context, key string) (string, error) {
	return d.c.NewMultipartUpload(ctx, d.bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
}

// Writer starts a multipart upload at p or, appending, resumes the one in
// progress there (an empty committed object may be appended to).
func (d *s3Driver) Writer(ctx context.Context, p string, appendMode bool) (storagedriver.FileWriter, error) {
	key := d.key(p)
	if !appendMode {
		id, err := d.newUpload(ctx, key)
		if err != nil {
			return nil, err
		}
		return d.newWriter(ctx, key, id, nil), nil
	}
	keyMarker, idMarker := "", ""
	for first := true; ; first = false {
		resp, err := d.c.ListMultipartUploads(ctx, d.bucket, key, keyMarker, idMarker, "", listMax)
		if err != nil {
			return nil, parseError(p, err)
		}
		if first && len(resp.Uploads) == 0 {
			fi, err := d.Stat(ctx, p)
			if err != nil {
				return nil, err
			}
			if fi.Size() != 0 {
				return nil, storagedriver.Error{DriverName: S3Name, Detail: fmt.Errorf("append to zero-size path %s unsupported", p)}
			}
			id, err := d.newUpload(ctx, key)
			if err != nil {
				return nil, err
			}
			return d.newWriter(ctx, key, id, nil), nil
		}
		for _, u := range resp.Uploads {
			if u.Key != key {
				continue
			}
			parts, err := d.listParts(ctx, key, u.UploadID)
			if err != nil {
				return nil, parseError(p, err)
			}
			return d.newWriter(ctx, key, u.UploadID, parts), nil
		}
		if !resp.IsTruncated {
			return nil, storagedriver.PathNotFoundError{Path: p, DriverName: S3Name}
		}
		keyMarker, idMarker = resp.NextKeyMarker, resp.NextUploadIDMarker
	}
}

func (d *s3Driver) listParts(ctx context.Context, key, uploadID string) ([]minio.ObjectPart, error) {
	var parts []minio.ObjectPart
	marker := 0
	for {
		res, err := d.c.ListObjectParts(ctx, d.bucket, key, uploadID, marker, listMax)
		if err != nil {
			return nil, err
		}
		parts = append(parts, res.ObjectParts...)
		if !res.IsTruncated {
			return parts, nil
		}
		marker = res.NextPartNumberMarker
	}
}

func (d *s3Driver) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	oi, err := d.c.StatObject(ctx, d.bucket, d.key(p), minio.StatObjectOptions{})
	if err == nil {
		return storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{
			Path: p, Size: oi.Size, ModTime: oi.LastModified}}, nil
	}
	if !notFound(err) {
		return nil, err
	}
	// A directory is a prefix some key lies under.
	res, err := d.c.ListObjectsV2(d.bucket, d.dirPrefix(p), "", "", "", 1)
	if err != nil {
		return nil, parseError(p, err)
	}
	if len(res.Contents) > 0 || len(res.CommonPrefixes) > 0 {
		return storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: p, IsDir: true}}, nil
	}
	return nil, storagedriver.PathNotFoundError{Path: p, DriverName: S3Name}
}

// List returns the paths of the files and folders directly under p.
func (d *s3Driver) List(ctx context.Context, p string) ([]string, error) {
	prefix := d.dirPrefix(p)
	var files, dirs []string
	for oi := range d.c.Client.ListObjects(ctx, d.bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: listMax}) {
		if oi.Err != nil {
			return nil, parseError(p, oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			dirs = append(dirs, d.path(strings.TrimSuffix(oi.Key, "/")))
		} else {
			files = append(files, d.path(oi.Key))
		}
	}
	if p != "/" && len(files) == 0 && len(dirs) == 0 {
		// S3 has no folders: an empty listing is a missing one.
		return nil, storagedriver.PathNotFoundError{Path: p, DriverName: S3Name}
	}
	return append(files, dirs...), nil
}

// Move copies src to dst within the bucket (in parts when large) and
// deletes src: S3 has no rename.
func (d *s3Driver) Move(ctx context.Context, src, dst string) error {
	_, err := d.c.ComposeObject(ctx,
		minio.CopyDestOptions{Bucket: d.bucket, Object: d.key(dst)},
		minio.CopySrcOptions{Bucket: d.bucket, Object: d.key(src)})
	if err != nil {
		return parseError(src, err)
	}
	return d.Delete(ctx, src)
}

// Delete removes the object at p and every object under p/.
func (d *s3Driver) Delete(ctx context.Context, p string) error {
	key := d.key(p)
	objects := make(chan minio.ObjectInfo)
	var listErr error
	found := 0
	go func() {
		defer close(objects)
		for oi := range d.c.Client.ListObjects(ctx, d.bucket, minio.ListObjectsOptions{Prefix: key, Recursive: true, MaxKeys: listMax}) {
			if oi.Err != nil {
				listErr = oi.Err
				return
			}
			// "/a" deletes "/a" and "/a/…", never "/ab".
			if len(oi.Key) > len(key) && oi.Key[len(key)] != '/' {
				continue
			}
			found++
			select {
			case objects <- oi:
			case <-ctx.Done():
				return
			}
		}
	}()
	var errs []error
	for e := range d.c.RemoveObjects(ctx, d.bucket, objects, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("delete %s: %w", e.ObjectName, e.Err))
	}
	if listErr != nil {
		return parseError(p, listErr)
	}
	if len(errs) > 0 {
		return storagedriver.Errors{DriverName: S3Name, Errs: errs}
	}
	if found == 0 {
		return storagedriver.PathNotFoundError{Path: p, DriverName: S3Name}
	}
	return nil
}

// RedirectURL returns "": clients always read through the registry
// (cairn's agents reach cairn, maybe not the bucket).
func (d *s3Driver) RedirectURL(*http.Request, string) (string, error) { return "", nil }

// Walk calls f on every file and folder under from in lexical order with
// one recursive listing; folders are inferred from the keys between them.
func (d *s3Driver) Walk(ctx context.Context, from string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	wo := &storagedriver.WalkOptions{}
	for _, o := range options {
		o(wo)
	}
	opts := minio.ListObjectsOptions{Prefix: d.dirPrefix(from), Recursive: true, MaxKeys: listMax}
	if wo.StartAfterHint != "" {
		opts.StartAfter = d.key(wo.StartAfterHint)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when f ends the walk early
	prevDir, skipDir := from, ""
	visit := func(fi storagedriver.FileInfo) (stop bool, err error) {
		if isSubpath(fi.Path(), skipDir) {
			return false, nil
		}
		switch err := f(fi); {
		case err == nil:
			return false, nil
		case errors.Is(err, storagedriver.ErrSkipDir):
			skipDir = fi.Path()
			return false, nil
		case errors.Is(err, storagedriver.ErrFilledBuffer):
			return true, nil
		default:
			return true, err
		}
	}
	for oi := range d.c.Client.ListObjects(ctx, d.bucket, opts) {
		if oi.Err != nil {
			return oi.Err
		}
		p := d.path(oi.Key)
		for _, dir := range directoryDiff(prevDir, p) {
			prevDir = dir
			if stop, err := visit(storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{Path: dir, IsDir: true}}); stop {
				return err
			}
		}
		if strings.HasSuffix(p, "/") { // a folder marker some tools write
			continue
		}
		if stop, err := visit(storagedriver.FileInfoInternal{FileInfoFields: storagedriver.FileInfoFields{
			Path: p, Size: oi.Size, ModTime: oi.LastModified}}); stop {
			return err
		}
	}
	return nil
}

// directoryDiff lists the folders of current that prev does not lie in,
// outermost first: ("/a/b", "/a/c/d/f") gives ["/a/c", "/a/c/d"].
func directoryDiff(prev, current string) []string {
	var paths []string
	if prev == "" || current == "" {
		return nil
	}
	parent := current
	for {
		parent = path.Dir(parent)
		if parent == "/" || parent == prev || strings.HasPrefix(prev+"/", parent+"/") {
			break
		}
		paths = append(paths, parent)
	}
	slices.Reverse(paths)
	return paths
}

func isSubpath(p, parent string) bool {
	switch {
	case parent == "":
		return false
	case p == parent:
		return true
	case parent == "/":
		return strings.HasPrefix(p, "/")
	}
	return strings.HasPrefix(p, parent+"/")
}
