package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-dev/cairn/registry/cdc"
)

// Chunk indexes: at push, every layer of at least DeltaThreshold bytes is cut
// into content-defined chunks (package cdc, the chunker of registry/datasets)
// and the chunks' sizes and digests are pushed as a small OCI artifact whose
// subject is the model manifest: a referrer, listed by the referrers API
// where the registry has one and under the tag sha256-<manifest hex> (the
// OCI 1.1 fallback) always. A puller holding an earlier version finds the
// chunks it already has by digest and fetches only the others, with HTTP
// Range requests on the same, standard layer blob.
const (
	// ArtifactTypeChunkIndex is the artifactType of the index manifest and
	// the media type of its one layer (a ChunkIndex).
	ArtifactTypeChunkIndex = "application/vnd.cairn.chunkindex.v1+json"
	// MediaTypeEmptyJSON is the OCI empty config ("{}").
	MediaTypeEmptyJSON = "application/vnd.oci.empty.v1+json"
	// DeltaThreshold: layers of at least this size get a chunk index at push
	// and are rebuilt from chunks at pull.
	DeltaThreshold = 8 << 20
	// maxIndexSize bounds a chunk index read into memory (~100 bytes per
	// ~250 KiB chunk: 64 MiB indexes ~160 GiB of layers).
	maxIndexSize = 64 << 20
	// maxIndexChunks bounds the chunks of one layer.
	maxIndexChunks = maxIndexSize / 64
)

// ChunkIndex is the content of a chunk index blob.
type ChunkIndex struct {
	MediaType string `json:"mediaType"` // ArtifactTypeChunkIndex
	// Chunker names the chunking parameters (cdc.Params()); an index with
	// other parameters cannot be matched against local chunks and is not
	// used.
	Chunker string        `json:"chunker"`
	Layers  []LayerChunks `json:"layers"`
}

// LayerChunks lists the chunks of one layer blob, in order.
type LayerChunks struct {
	Digest string       `json:"digest"` // of the layer blob
	Size   int64        `json:"size"`
	Chunks []IndexChunk `json:"chunks"`
}

// IndexChunk is one chunk: its size and the sha256 of its bytes.
type IndexChunk struct {
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
}

// errUnusableIndex: a chunk index made with other chunking parameters.
var errUnusableIndex = errors.New("chunk index made with other chunking parameters")

// DecodeChunkIndex parses and validates a chunk index: cairn's media type
// and chunker, well-formed sha256 digests, each layer listed once, chunk
// sizes positive, at most cdc.MaxChunk, and adding up to the layer's size.
func DecodeChunkIndex(b []byte) (*ChunkIndex, error) {
	if len(b) > maxIndexSize {
		return nil, fmt.Errorf("chunk index: %d bytes, over %d", len(b), maxIndexSize)
	}
	var ix ChunkIndex
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ix); err != nil {
		return nil, fmt.Errorf("chunk index: %w", err)
	}
	if ix.MediaType != ArtifactTypeChunkIndex {
		return nil, fmt.Errorf("chunk index: mediaType %q, want %s", ix.MediaType, ArtifactTypeChunkIndex)
	}
	if ix.Chunker != cdc.Params() {
		return nil, fmt.Errorf("chunk index: chunker %q: %w", ix.Chunker, errUnusableIndex)
	}
	seen := map[string]bool{}
	for i := range ix.Layers {
		l := &ix.Layers[i]
		if err := l.validate(); err != nil {
			return nil, fmt.Errorf("chunk index: %w", err)
		}
		if seen[l.Digest] {
			return nil, fmt.Errorf("chunk index: layer %s listed twice", l.Digest)
		}
		seen[l.Digest] = true
	}
	return &ix, nil
}

func (l *LayerChunks) validate() error {
	if !reDigest.MatchString(l.Digest) {
		return fmt.Errorf("layer digest %q is not sha256:<64 hex>", l.Digest)
	}
	if l.Size < 0 {
		return fmt.Errorf("layer %s: negative size", l.Digest)
	}
	if len(l.Chunks) > maxIndexChunks {
		return fmt.Errorf("layer %s: %d chunks, over %d", l.Digest, len(l.Chunks), maxIndexChunks)
	}
	var sum int64
	for j, c := range l.Chunks {
		if c.Size <= 0 || c.Size > cdc.MaxChunk {
			return fmt.Errorf("layer %s: chunk %d: size %d outside 1..%d", l.Digest, j, c.Size, cdc.MaxChunk)
		}
		if !reDigest.MatchString(c.Digest) {
			return fmt.Errorf("layer %s: chunk %d: digest %q is not sha256:<64 hex>", l.Digest, j, c.Digest)
		}
		sum += c.Size
	}
	if sum != l.Size {
		return fmt.Errorf("layer %s: chunks add up to %d bytes, want %d", l.Digest, sum, l.Size)
	}
	return nil
}

// decodeLayerChunks parses one layer's chunks (the cache's local index).
func decodeLayerChunks(b []byte) (*LayerChunks, error) {
	var l LayerChunks
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	return &l, nil
}

// chunkReader cuts r into chunks and returns them with the digest of all of
// r (a pull checks a cached blob with it).
func chunkReader(ctx context.Context, r io.Reader) (*LayerChunks, error) {
	whole := sha256.New()
	l, err := splitChunks(ctx, r, whole)
	if err != nil {
		return nil, err
	}
	l.Digest = "sha256:" + hex.EncodeToString(whole.Sum(nil))
	return l, nil
}

// chunkLayer cuts the file at path into chunks without hashing it whole: a
// push takes the layer digest from the upload, which hashes the same file
// (Push checks that the file did not change in between).
func chunkLayer(ctx context.Context, path string) (*LayerChunks, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return splitChunks(ctx, f, nil)
}

// splitChunks cuts r into chunks, writing its bytes to whole too unless it
// is nil. The Digest of the result is left empty.
func splitChunks(ctx context.Context, r io.Reader, whole hash.Hash) (*LayerChunks, error) {
	l := &LayerChunks{}
	n, err := cdc.Split(r, func(_ int64, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if whole != nil {
			whole.Write(data)
		}
		sum := sha256.Sum256(data)
		l.Chunks = append(l.Chunks, IndexChunk{Size: int64(len(data)), Digest: "sha256:" + hex.EncodeToString(sum[:])})
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.Size = n
	return l, nil
}

// emptyJSON is the OCI empty descriptor's content.
var emptyJSON = []byte("{}")

// pushChunkIndex pushes the chunk index of the layers as a referrer of the
// manifest subject and records it under the fallback tag. It returns the
// index manifest's digest.
func pushChunkIndex(ctx context.Context, c *repoClient, subject v1.Descriptor, layers []LayerChunks) (string, error) {
	ix := ChunkIndex{MediaType: ArtifactTypeChunkIndex, Chunker: cdc.Params(), Layers: layers}
	b, err := json.Marshal(ix)
	if err != nil {
		return "", fmt.Errorf("encode chunk index: %w", err)
	}
	ld, err := pushBytes(ctx, c, b, ArtifactTypeChunkIndex)
	if err != nil {
		return "", fmt.Errorf("push chunk index: %w", err)
	}
	cd, err := pushBytes(ctx, c, emptyJSON, MediaTypeEmptyJSON)
	if err != nil {
		return "", fmt.Errorf("push chunk index config: %w", err)
	}
	cd.Data = emptyJSON
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactTypeChunkIndex,
		Config:        cd,
		Layers:        []v1.Descriptor{ld},
		Subject:       &subject,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode chunk index manifest: %w", err)
	}
	md := descriptorOf(mb, string(types.OCIManifestSchema1))
	md.ArtifactType = ArtifactTypeChunkIndex
	resp, err := c.do(ctx, http.MethodPut, c.base+"/manifests/"+md.Digest.String(), bytes.NewReader(mb), int64(len(mb)),
		map[string]string{"Content-Type": string(types.OCIManifestSchema1)})
	if err != nil {
		return "", fmt.Errorf("put chunk index manifest: %w", err)
	}
	if err := check(resp, http.StatusCreated, http.StatusOK, http.StatusAccepted); err != nil {
		return "", fmt.Errorf("put chunk index manifest: %w", err)
	}
	resp.Body.Close()
	// A registry with the referrers API says so with OCI-Subject; the
	// fallback tag is written anyway, so that pullers of registries behind
	// proxies that drop the header find it too.
	if err := c.addFallbackReferrer(ctx, subject.Digest, md); err != nil {
		return "", err
	}
	return md.Digest.String(), nil
}

// fallbackTag is the OCI 1.1 referrers tag of a subject: sha256-<hex>.
func fallbackTag(h v1.Hash) string { return h.Algorithm + "-" + h.Hex }

// addFallbackReferrer adds d to the image index at the subject's fallback
// tag (creating it), unless it is listed already.
func (c *repoClient) addFallbackReferrer(ctx context.Context, subject v1.Hash, d v1.Descriptor) error {
	tag := fallbackTag(subject)
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	b, mt, _, err := c.getManifest(ctx, tag)
	switch {
	case err == nil && isIndex(b, mt):
		old, derr := decodeIndex(b)
		if derr != nil {
			return fmt.Errorf("referrers tag %s: %w", tag, derr)
		}
		idx = *old
		for _, m := range idx.Manifests {
			if m.Digest == d.Digest {
				return nil
			}
		}
	case err == nil:
		return fmt.Errorf("referrers tag %s holds a %s, not an image index", tag, mt)
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("referrers tag %s: %w", tag, err)
	}
	idx.MediaType = types.OCIImageIndex
	idx.Manifests = append(idx.Manifests, d)
	nb, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode referrers tag %s: %w", tag, err)
	}
	return c.putManifest(ctx, tag, nb, string(types.OCIImageIndex))
}

// referrers lists the manifests whose subject is subject and whose
// artifactType is artifactType: the referrers API, else the fallback tag.
func (c *repoClient) referrers(ctx context.Context, subject v1.Hash, artifactType string) ([]v1.Descriptor, error) {
	var idx *v1.IndexManifest
	u := c.base + "/referrers/" + subject.String() + "?artifactType=" + url.QueryEscape(artifactType)
	resp, err := c.do(ctx, http.MethodGet, u, nil, 0, map[string]string{"Accept": string(types.OCIImageIndex)})
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: %w", subject, err)
	}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), string(types.OCIImageIndex)) {
		b, rerr := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
		resp.Body.Close()
		if rerr != nil {
			return nil, fmt.Errorf("referrers of %s: %w", subject, rerr)
		}
		if idx, err = decodeIndex(b); err != nil {
			return nil, fmt.Errorf("referrers of %s: %w", subject, err)
		}
	} else {
		resp.Body.Close()
	}
	var out []v1.Descriptor
	if idx != nil {
		for _, m := range idx.Manifests {
			if m.ArtifactType == artifactType {
				out = append(out, m)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
	}
	b, mt, _, err := c.getManifest(ctx, fallbackTag(subject))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !isIndex(b, mt) {
		return nil, nil
	}
	if idx, err = decodeIndex(b); err != nil {
		return nil, fmt.Errorf("referrers tag of %s: %w", subject, err)
	}
	for _, m := range idx.Manifests {
		if m.ArtifactType == artifactType {
			out = append(out, m)
		}
	}
	return out, nil
}

// fetchChunkIndex finds and reads the chunk index attached to the manifest
// subject; nil without one. It returns the bytes it downloaded too.
func (c *repoClient) fetchChunkIndex(ctx context.Context, subject v1.Hash) (*ChunkIndex, int64, error) {
	refs, err := c.referrers(ctx, subject, ArtifactTypeChunkIndex)
	if err != nil || len(refs) == 0 {
		return nil, 0, err
	}
	d := refs[len(refs)-1] // the newest
	b, _, _, err := c.getManifest(ctx, d.Digest.String())
	if err != nil {
		return nil, 0, err
	}
	n := int64(len(b))
	m, err := decodeManifest(b)
	if err != nil {
		return nil, n, err
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return nil, n, fmt.Errorf("chunk index %s: subject is not %s", d.Digest, subject)
	}
	for _, l := range m.Layers {
		if string(l.MediaType) != ArtifactTypeChunkIndex {
			continue
		}
		if l.Size > maxIndexSize {
			return nil, n, fmt.Errorf("chunk index %s: %d bytes, over %d", l.Digest, l.Size, maxIndexSize)
		}
		rc, _, err := c.fetchBlob(ctx, l.Digest, 0, l.Size)
		if err != nil {
			return nil, n, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, l.Size+1))
		rc.Close()
		n += int64(len(b))
		if err != nil {
			return nil, n, fmt.Errorf("read chunk index %s: %w", l.Digest, err)
		}
		if err := verifyBytes(b, l); err != nil {
			return nil, n, err
		}
		ix, err := DecodeChunkIndex(b)
		return ix, n, err
	}
	return nil, n, fmt.Errorf("chunk index %s: no %s layer", d.Digest, ArtifactTypeChunkIndex)
}

// FetchChunkIndex reads the chunk index attached to the model artifact ref
// names (for an image index, the manifest Inspect chooses): nil and no
// error when the artifact has none (pushed without one, or with no layer of
// DeltaThreshold bytes). cairn plan estimates delta updates from it.
func FetchChunkIndex(ctx context.Context, ref string, opts Options) (*ChunkIndex, error) {
	c, res, err := resolveRef(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	ix, _, err := c.fetchChunkIndex(ctx, res.digest)
	if err != nil {
		return nil, fmt.Errorf("chunk index of %s: %w", ref, err)
	}
	return ix, nil
}
