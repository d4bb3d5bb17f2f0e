package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/cairn-dev/cairn/registry/distdriver"
	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
)

// RegistryOptions configure NewRegistry.
type RegistryOptions struct {
	// Dir is the registry's folder in the data folder: the filesystem
	// driver's root, and where the previous registry kept its manifests
	// (Dir/manifests), migrated at start.
	Dir string
	// Store is the blob store URL of cairn serve (file:///path or
	// s3://bucket/prefix?endpoint=…&region=…&insecure=1). An s3:// URL puts
	// the registry in that bucket under prefix/registry, so replicas share
	// it; file:// (or "") keeps it under Dir. The previous registry's blobs
	// are read from this store when migrating.
	Store string
	// Secret signs upload state between requests; replicas behind one
	// address must share it (NewRegistry derives it from the admin token).
	Secret string
	Logger *slog.Logger
}

// Registry is the built-in OCI registry: CNCF Distribution (the registry
// Docker, GitLab and Harbor build on) embedded at /v2/, its filesystem
// layout under the data folder or an S3 bucket (cairn's drivers,
// registry/distdriver), deletes enabled. cairn's
// auth sits in front of it (Server.registryGuard). Writes pass a gate that
// GC closes: Distribution's garbage collector is offline.
type Registry struct {
	app    *handlers.App
	driver storagedriver.StorageDriver
	ns     distribution.Namespace
	log    *slog.Logger

	gate sync.RWMutex // writes hold it shared; GC exclusively
}

// RegistrySecret derives the upload-state secret from the admin token, so
// replicas configured with one admin token share it.
func RegistrySecret(adminToken string) string {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("cairn built-in registry upload state"))
	return hex.EncodeToString(m.Sum(nil))
}

// storageConfig maps cairn's blob store URL to a Distribution storage
// section.
func storageConfig(o RegistryOptions) (configuration.Storage, string, error) {
	st := configuration.Storage{
		"delete":   configuration.Parameters{"enabled": true},
		"redirect": configuration.Parameters{"disable": true}, // agents reach cairn, maybe not S3
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{
			"enabled": true, "age": "168h", "interval": "24h", "dryrun": false}},
	}
	if o.Store == "" || strings.HasPrefix(o.Store, "file:") {
		distdriver.Register()
		st[distdriver.FSName] = configuration.Parameters{"rootdirectory": o.Dir}
		return st, "filesystem " + o.Dir, nil
	}
	u, err := url.Parse(o.Store)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, "", fmt.Errorf("registry storage %q: want file:// or s3://bucket/prefix", o.Store)
	}
	q := u.Query()
	root := "/" + strings.Trim(strings.Trim(u.Path, "/")+"/registry", "/")
	p := configuration.Parameters{
		"bucket":        u.Host,
		"rootdirectory": root,
		"region":        q.Get("region"),
		"accesskey":     os.Getenv("AWS_ACCESS_KEY_ID"),
		"secretkey":     os.Getenv("AWS_SECRET_ACCESS_KEY"),
	}
	if p["region"] == "" {
		p["region"] = "us-east-1"
	}
	if ep := q.Get("endpoint"); ep != "" {
		p["endpoint"] = ep
	}
	switch q.Get("insecure") {
	case "1", "true", "yes":
		p["insecure"] = true
	}
	distdriver.Register()
	st[distdriver.S3Name] = p
	return st, "s3://" + u.Host + root, nil
}

// NewRegistry opens the built-in registry and migrates, once, what the
// previous built-in registry left under o.Dir.
func NewRegistry(ctx context.Context, o RegistryOptions) (r *Registry, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("built-in registry: %w", err)
	}
	st, where, err := storageConfig(o)
	if err != nil {
		return nil, fmt.Errorf("built-in registry: %w", err)
	}
	// Distribution logs through logrus's standard logger: keep its
	// per-request lines and client errors out of cairn's log, its warnings
	// and server errors in.
	logrus.SetLevel(logrus.WarnLevel)
	logrus.SetOutput(clientErrorFilter{os.Stderr})
	cfg := &configuration.Configuration{Storage: st}
	cfg.HTTP.Secret = o.Secret
	cfg.Log.AccessLog.Disabled = true
	defer func() {
		// NewApp and the driver factory panic on bad configuration.
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("built-in registry (%s): %v", where, p)
		}
	}()
	driver, err := factory.Create(ctx, st.Type(), st.Parameters())
	if err != nil {
		return nil, fmt.Errorf("built-in registry (%s): %w", where, err)
	}
	ns, err := storage.NewRegistry(ctx, driver, storage.EnableDelete, storage.EnableValidateImageIndexImagesExist,
		storage.ManifestURLsAllowRegexp(regexp.MustCompile("^$")))
	if err != nil {
		return nil, fmt.Errorf("built-in registry (%s): %w", where, err)
	}
	r = &Registry{app: handlers.NewApp(ctx, cfg), driver: driver, ns: ns, log: o.Logger}
	if err := r.migrate(ctx, filepath.Join(o.Dir, "manifests"), o.Store); err != nil {
		return nil, err
	}
	o.Logger.Debug("built-in registry", "storage", where)
	return r, nil
}

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		r.gate.RLock()
		defer r.gate.RUnlock()
	}
	r.app.ServeHTTP(w, req)
}

// clientErrorFilter drops Distribution's log lines about requests that
// failed on the client's side (4xx: unknown blob, bad manifest, …).
type clientErrorFilter struct{ w io.Writer }

func (f clientErrorFilter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("http.response.status=4")) {
		return len(p), nil
	}
	return f.w.Write(p)
}

// GCResult is what a garbage collection removed.
type GCResult struct {
	BlobsBefore    int   `json:"blobsBefore"`
	BlobsAfter     int   `json:"blobsAfter"`
	BytesBefore    int64 `json:"bytesBefore"`
	BytesAfter     int64 `json:"bytesAfter"`
	RemoveUntagged bool  `json:"removeUntagged"`
}

// GC removes the blobs no manifest references (and, with removeUntagged,
// manifests no tag or index names). Writes to this registry wait while it
// runs; reads go on. Replicas sharing an S3 bucket do not see the pause:
// run it where the pushes go.
func (r *Registry) GC(ctx context.Context, removeUntagged bool) (GCResult, error) {
	r.gate.Lock()
	defer r.gate.Unlock()
	res := GCResult{RemoveUntagged: removeUntagged}
	var err error
	if res.BlobsBefore, res.BytesBefore, err = r.countBlobs(ctx); err != nil {
		return res, err
	}
	if res.BlobsBefore == 0 {
		return res, nil // nothing pushed yet: no folders to walk
	}
	if err := storage.MarkAndSweep(ctx, r.driver, r.ns, storage.GCOpts{RemoveUntagged: removeUntagged, Quiet: true}); err != nil {
		return res, fmt.Errorf("registry gc: %w", err)
	}
	if res.BlobsAfter, res.BytesAfter, err = r.countBlobs(ctx); err != nil {
		return res, err
	}
	r.log.Info("registry gc", "untagged", removeUntagged, "blobsRemoved", res.BlobsBefore-res.BlobsAfter,
		"bytesFreed", res.BytesBefore-res.BytesAfter)
	return res, nil
}

func (r *Registry) countBlobs(ctx context.Context) (n int, size int64, err error) {
	err = r.ns.Blobs().Enumerate(ctx, func(d digest.Digest) error {
		desc, err := r.ns.BlobStatter().Stat(ctx, d)
		if err != nil {
			return nil // removed meanwhile
		}
		n++
		size += desc.Size
		return nil
	})
	var notFound storagedriver.PathNotFoundError
	if errors.As(err, &notFound) {
		return 0, 0, nil // no blob yet
	}
	if err != nil {
		return 0, 0, fmt.Errorf("registry gc: count blobs: %w", err)
	}
	return n, size, nil
}
