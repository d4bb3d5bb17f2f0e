package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is the built-in OCI registry: go-containerregistry's registry
// with blobs in a folder, and manifests — which it keeps in memory — written
// to disk as they are pushed and replayed at start, so they survive restarts.
type Registry struct {
	inner http.Handler
	dir   string // manifest records

	mu  sync.Mutex
	seq int64
}

// manifestRecord is one pushed manifest as kept on disk.
type manifestRecord struct {
	Seq         int64  `json:"seq"`
	Repo        string `json:"repo"`
	Ref         string `json:"ref"`
	ContentType string `json:"contentType"`
	Body        []byte `json:"body"`
}

// NewRegistry serves an OCI registry whose blobs go through bh (see
// NewBlobHandler, or registry.NewDiskBlobHandler) and whose manifests are
// kept under mdir, replaying the manifests pushed before.
func NewRegistry(bh registry.BlobHandler, mdir string) (*Registry, error) {
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return nil, fmt.Errorf("built-in registry: %w", err)
	}
	r := &Registry{
		inner: registry.New(registry.WithBlobHandler(bh), registry.WithReferrersSupport(true),
			registry.Logger(log.New(io.Discard, "", 0))),
		dir: mdir,
	}
	if err := r.replay(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Registry) replay() error {
	ents, err := os.ReadDir(r.dir)
	if err != nil {
		return fmt.Errorf("built-in registry: read manifests: %w", err)
	}
	var recs []manifestRecord
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.dir, e.Name()))
		if err != nil {
			return fmt.Errorf("built-in registry: %w", err)
		}
		var rec manifestRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("built-in registry: decode %s: %w", e.Name(), err)
		}
		recs = append(recs, rec)
	}
	slices.SortFunc(recs, func(a, b manifestRecord) int { return int(a.Seq - b.Seq) })
	for _, rec := range recs {
		r.seq = max(r.seq, rec.Seq)
		req := httptest.NewRequest(http.MethodPut, "/v2/"+rec.Repo+"/manifests/"+rec.Ref, bytes.NewReader(rec.Body))
		req.Header.Set("Content-Type", rec.ContentType)
		w := httptest.NewRecorder()
		r.inner.ServeHTTP(w, req)
		if w.Code/100 != 2 {
			return fmt.Errorf("built-in registry: replay %s:%s: %d %s", rec.Repo, rec.Ref, w.Code, w.Body.String())
		}
	}
	return nil
}

// splitManifestPath returns repo and ref of /v2/<repo>/manifests/<ref>.
func splitManifestPath(p string) (repo, ref string, ok bool) {
	p = strings.TrimPrefix(p, "/v2/")
	i := strings.LastIndex(p, "/manifests/")
	if i <= 0 {
		return "", "", false
	}
	return p[:i], p[i+len("/manifests/"):], true
}

func (r *Registry) recordPath(repo, ref string) string {
	h := sha256.Sum256([]byte(repo + "\x00" + ref))
	return filepath.Join(r.dir, hex.EncodeToString(h[:16])+".json")
}

// maxManifest bounds a pushed manifest (OCI registries use 4 MiB).
const maxManifest = 4 << 20

func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	repo, ref, isManifest := splitManifestPath(req.URL.Path)
	if !isManifest || (req.Method != http.MethodPut && req.Method != http.MethodDelete) {
		r.inner.ServeHTTP(w, req)
		return
	}
	if req.Method == http.MethodDelete {
		sw := &statusWriter{ResponseWriter: w, code: 200}
		r.inner.ServeHTTP(sw, req)
		if sw.code/100 == 2 {
			os.Remove(r.recordPath(repo, ref))
		}
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxManifest))
	if err != nil {
		http.Error(w, "manifest too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	// The answer waits until the manifest is on disk: a client told 201
	// finds it after a restart.
	rw := httptest.NewRecorder()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inner.ServeHTTP(rw, req)
	if rw.Code/100 == 2 {
		if err := r.persist(repo, ref, req.Header.Get("Content-Type"), body); err != nil {
			http.Error(w, "store manifest: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	for k, v := range rw.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rw.Code)
	w.Write(rw.Body.Bytes())
}

func (r *Registry) persist(repo, ref, contentType string, body []byte) error {
	r.seq++
	b, err := json.Marshal(manifestRecord{Seq: r.seq, Repo: repo, Ref: ref, ContentType: contentType, Body: body})
	if err != nil {
		return err
	}
	path := r.recordPath(repo, ref)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
