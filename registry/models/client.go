package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// maxManifestSize bounds manifests and configs read into memory.
const maxManifestSize = 4 << 20

var manifestAccept = strings.Join([]string{
	string(types.OCIManifestSchema1),
	string(types.OCIImageIndex),
	string(types.DockerManifestSchema2),
	string(types.DockerManifestList),
}, ", ")

// repoClient speaks the OCI distribution API to one repository, with
// go-containerregistry's authenticating transport. It streams blobs both ways
// (go-containerregistry's remote package needs a layer's digest before it
// uploads it, which costs a second read of every file).
type repoClient struct {
	repo   name.Repository
	client *http.Client
	base   string // scheme://host/v2/<repo>
}

func parseRef(ref string, opts Options) (name.Reference, error) {
	var nopts []name.Option
	if opts.PlainHTTP {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w", ref, err)
	}
	return r, nil
}

// baseTransport is opts.Transport, else a clone of remote's with a 256 KiB
// buffer on the side that carries blobs: writes for a push, reads for a
// pull. The other side keeps net/http's 4 KiB (requests and answers of a
// few hundred bytes), 252 KiB less per connection.
func baseTransport(opts Options, push bool) http.RoundTripper {
	if opts.Transport != nil {
		return opts.Transport
	}
	if t, ok := remote.DefaultTransport.(*http.Transport); ok {
		t = t.Clone()
		if push {
			t.WriteBufferSize = 256 << 10
		} else {
			t.ReadBufferSize = 256 << 10
		}
		return t
	}
	return remote.DefaultTransport
}

func newRepoClient(ctx context.Context, repo name.Repository, opts Options, push bool) (*repoClient, error) {
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	auth, err := kc.Resolve(repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	scope := transport.PullScope
	if push {
		scope = transport.PushScope
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, baseTransport(opts, push), []string{repo.Scope(scope)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", repo.RegistryStr(), err)
	}
	return &repoClient{
		repo:   repo,
		client: &http.Client{Transport: tr},
		base:   fmt.Sprintf("%s://%s/v2/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr()),
	}, nil
}

func (c *repoClient) do(ctx context.Context, method, u string, body io.Reader, size int64, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return c.client.Do(req)
}

func check(resp *http.Response, codes ...int) error {
	if err := transport.CheckError(resp, codes...); err != nil {
		resp.Body.Close()
		return err
	}
	return nil
}

// getManifest fetches the manifest or index named by reference (a tag or a
// digest) and verifies its digest when reference is one.
func (c *repoClient) getManifest(ctx context.Context, reference string) ([]byte, string, v1.Hash, error) {
	resp, err := c.do(ctx, http.MethodGet, c.base+"/manifests/"+reference, nil, 0, map[string]string{"Accept": manifestAccept})
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("get manifest %s: %w", reference, err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		if resp.StatusCode == http.StatusNotFound {
			// The registry answered: no such manifest (or repository).
			return nil, "", v1.Hash{}, fmt.Errorf("get manifest %s: %w: %w", reference, ErrNotFound, err)
		}
		return nil, "", v1.Hash{}, fmt.Errorf("get manifest %s: %w", reference, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, "", v1.Hash{}, fmt.Errorf("read manifest %s: %w", reference, err)
	}
	if len(b) > maxManifestSize {
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s is larger than %d bytes", reference, maxManifestSize)
	}
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if strings.HasPrefix(reference, "sha256:") && h.String() != reference {
		return nil, "", v1.Hash{}, fmt.Errorf("manifest %s: %w: got %s", reference, ErrDigestMismatch, h)
	}
	mt := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	return b, strings.TrimSpace(mt), h, nil
}

// putManifest uploads a manifest under reference (a tag or its digest).
func (c *repoClient) putManifest(ctx context.Context, reference string, body []byte, mediaType string) error {
	resp, err := c.do(ctx, http.MethodPut, c.base+"/manifests/"+reference, bytes.NewReader(body), int64(len(body)),
		map[string]string{"Content-Type": mediaType})
	if err != nil {
		return fmt.Errorf("put manifest %s: %w", reference, err)
	}
	if err := check(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return fmt.Errorf("put manifest %s: %w", reference, err)
	}
	resp.Body.Close()
	return nil
}

// blobExists reports whether the repository has the blob.
func (c *repoClient) blobExists(ctx context.Context, h v1.Hash) (bool, error) {
	resp, err := c.do(ctx, http.MethodHead, c.base+"/blobs/"+h.String(), nil, 0, nil)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// uploadBlob streams size bytes of r to the registry in one pass, hashing them
// on the way: POST starts an upload session, one PATCH carries the bytes, the
// final PUT names the digest learned while sending. It returns the digest.
func (c *repoClient) uploadBlob(ctx context.Context, r io.Reader, size int64) (v1.Hash, error) {
	loc, err := c.startUpload(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	return c.finishUpload(ctx, loc, r, size)
}

// startUpload opens an upload session and returns its location.
func (c *repoClient) startUpload(ctx context.Context) (*url.URL, error) {
	resp, err := c.do(ctx, http.MethodPost, c.base+"/blobs/uploads/", nil, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	if err := check(resp, http.StatusAccepted); err != nil {
		return nil, fmt.Errorf("start upload: %w", err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("start upload: no location: %w", err)
	}
	return loc, nil
}

// mountBlob asks the registry to link blob h from repository from (same
// registry) into this one. It reports whether it did; any failure is a no.
func (c *repoClient) mountBlob(ctx context.Context, h v1.Hash, from string) bool {
	q := url.Values{"mount": {h.String()}, "from": {from}}
	resp, err := c.do(ctx, http.MethodPost, c.base+"/blobs/uploads/?"+q.Encode(), nil, 0, nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusAccepted {
		// Not mounted, an upload session was opened instead: close it.
		if loc, err := resp.Location(); err == nil {
			if r, err := c.do(ctx, http.MethodDelete, loc.String(), nil, 0, nil); err == nil {
				r.Body.Close()
			}
		}
	}
	return resp.StatusCode == http.StatusCreated
}

// finishUpload sends the bytes to an upload session and commits them.
func (c *repoClient) finishUpload(ctx context.Context, loc *url.URL, r io.Reader, size int64) (v1.Hash, error) {
	var resp *http.Response
	var err error

	hr := &hashingReader{r: r, h: sha256.New()}
	if size > 0 {
		// Chunked (length -1), so that net/http copies through hr.WriteTo in
		// 1 MiB writes; with a length it wraps the body and copies 32 KiB at a
		// time.
		resp, err = c.do(ctx, http.MethodPatch, loc.String(), hr, -1, map[string]string{"Content-Type": "application/octet-stream"})
		if err != nil {
			return v1.Hash{}, fmt.Errorf("upload: %w", err)
		}
		if err := check(resp, http.StatusAccepted, http.StatusNoContent, http.StatusCreated); err != nil {
			return v1.Hash{}, fmt.Errorf("upload: %w", err)
		}
		resp.Body.Close()
		if l, err := resp.Location(); err == nil {
			loc = l
		}
	}
	if hr.n != size {
		return v1.Hash{}, fmt.Errorf("upload: read %d bytes, want %d (file changed?)", hr.n, size)
	}
	h := hr.sum()
	q := loc.Query()
	q.Set("digest", h.String())
	u := *loc
	u.RawQuery = q.Encode()
	resp, err = c.do(ctx, http.MethodPut, u.String(), nil, 0, map[string]string{"Content-Type": "application/octet-stream"})
	if err != nil {
		return v1.Hash{}, fmt.Errorf("commit upload %s: %w", h, err)
	}
	if err := check(resp, http.StatusCreated, http.StatusAccepted, http.StatusNoContent); err != nil {
		return v1.Hash{}, fmt.Errorf("commit upload %s: %w", h, err)
	}
	resp.Body.Close()
	return h, nil
}

// fetchBlob GETs a blob of size bytes from offset on. It returns the body
// and the offset the body starts at: offset when the registry honoured the
// Range, else 0.
func (c *repoClient) fetchBlob(ctx context.Context, h v1.Hash, offset, size int64) (io.ReadCloser, int64, error) {
	hdr := map[string]string{}
	if offset > 0 && offset < size {
		// A closed range: some registries understand no other.
		hdr["Range"] = "bytes=" + strconv.FormatInt(offset, 10) + "-" + strconv.FormatInt(size-1, 10)
	}
	resp, err := c.do(ctx, http.MethodGet, c.base+"/blobs/"+h.String(), nil, 0, hdr)
	if err != nil {
		return nil, 0, fmt.Errorf("get blob %s: %w", h, err)
	}
	if err := check(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		return nil, 0, fmt.Errorf("get blob %s: %w", h, err)
	}
	if resp.StatusCode == http.StatusPartialContent {
		cr := resp.Header.Get("Content-Range")
		if !strings.HasPrefix(cr, "bytes "+strconv.FormatInt(offset, 10)+"-") {
			resp.Body.Close()
			return nil, 0, fmt.Errorf("get blob %s: asked bytes from %d, got Content-Range %q", h, offset, cr)
		}
		return resp.Body, offset, nil
	}
	return resp.Body, 0, nil
}

// fetchSmallBlob reads a small blob (a config) into memory and verifies it.
func (c *repoClient) fetchSmallBlob(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxManifestSize {
		return nil, fmt.Errorf("blob %s: %d bytes is too large for a config", d.Digest, d.Size)
	}
	rc, _, err := c.fetchBlob(ctx, d.Digest, 0, d.Size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d.Digest, err)
	}
	if err := verifyBytes(b, d); err != nil {
		return nil, err
	}
	return b, nil
}

func verifyBytes(b []byte, d v1.Descriptor) error {
	if int64(len(b)) != d.Size {
		return fmt.Errorf("blob %s: %w: %d bytes, want %d", d.Digest, ErrDigestMismatch, len(b), d.Size)
	}
	if d.Digest.Algorithm != "sha256" {
		return fmt.Errorf("blob %s: unsupported digest algorithm %q", d.Digest, d.Digest.Algorithm)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != d.Digest.Hex {
		return fmt.Errorf("blob %s: %w", d.Digest, ErrDigestMismatch)
	}
	return nil
}

type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	return n, err
}

// WriteTo copies the rest of r to w in large pieces, hashing them.
func (r *hashingReader) WriteTo(w io.Writer) (int64, error) {
	b := getBuf() // pooled: every blob of a push, the small ones too, passes here
	defer putBuf(b)
	buf := *b
	var total int64
	for {
		n, err := r.r.Read(buf)
		if n > 0 {
			r.h.Write(buf[:n])
			r.n += int64(n)
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

func (r *hashingReader) sum() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(r.h.Sum(nil))}
}

var (
	reHex64  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	reDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// decodeManifest parses an OCI image manifest.
func decodeManifest(b []byte) (*v1.Manifest, error) {
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("decode manifest: schemaVersion %d, want 2", m.SchemaVersion)
	}
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if l.Digest.Algorithm != "sha256" || !reHex64.MatchString(l.Digest.Hex) {
			return nil, fmt.Errorf("decode manifest: descriptor digest %q is not sha256", l.Digest)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("decode manifest: descriptor %s has negative size", l.Digest)
		}
	}
	return &m, nil
}
