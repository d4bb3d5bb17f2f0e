package blobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/url"
	"strings"

	"github.com/cairn-dev/cairn/digest"
	"github.com/cairn-dev/cairn/errdef"
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrNotFound: no object under that key (errdef.ErrNotFound).
	ErrNotFound = errdef.ErrNotFound
	// ErrDigestMismatch: the bytes do not hash to the expected digest or size
	// (errdef.ErrDigestMismatch).
	ErrDigestMismatch = errdef.ErrDigestMismatch
)

// Info describes one stored object.
type Info struct {
	Key  string // slash-separated key relative to the store root
	Size int64
}

// Store is a place immutable objects live. Keys are slash-separated paths
// relative to the store root, such as "blobs/sha256/ab/ab12…".
type Store interface {
	// Stat returns the object's size, or an error wrapping ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Get reads length bytes from offset off; length < 0 reads to the end.
	// A missing object gives an error wrapping ErrNotFound.
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)
	// Put stores size bytes read from r under key unless the key exists
	// already, in which case r is not read and written is false. When digest
	// ("sha256:<hex>") is not empty the bytes are hashed while streaming and
	// a mismatch (of digest or size) fails with ErrDigestMismatch before
	// anything becomes visible under key. An object, once written, is never
	// rewritten; concurrent writers of the same content are harmless.
	Put(ctx context.Context, key string, r io.Reader, size int64, digest string) (written bool, err error)
	// List calls fn for every object whose key starts with prefix.
	List(ctx context.Context, prefix string, fn func(Info) error) error
}

// BlindPutter is implemented by stores where asking whether an object
// exists costs a round trip (S3). PutBlind uploads without asking, verifying
// digest and size while streaming like Put; callers use it for keys they
// know are absent (from a List), since rewriting identical content is
// harmless anyway.
type BlindPutter interface {
	PutBlind(ctx context.Context, key string, r io.Reader, size int64, digest string) error
}

// Open opens the store a URL names:
//
//	file:///path/to/folder
//	s3://bucket/prefix?endpoint=host:port&insecure=1&region=us-east-1
//
// S3 credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; the
// bucket is created when missing. Without endpoint, s3.amazonaws.com is used.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse store URL %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("store URL %q: file URLs take no host (file:///abs/path)", rawURL)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("store URL %q: empty path", rawURL)
		}
		return NewFolder(u.Path)
	case "s3":
		return openS3(ctx, u)
	case "":
		return nil, fmt.Errorf("store URL %q: want file:///path or s3://bucket/prefix", rawURL)
	default:
		return nil, fmt.Errorf("store URL %q: unsupported scheme %q (want file or s3)", rawURL, u.Scheme)
	}
}

// BlobKey is the key of content with the given digest: blobs/sha256/<2 hex>/<64 hex>.
func BlobKey(d string) string { return digest.Digest(d).Key("blobs") }

// TreeKey is the key of a dataset tree: trees/sha256/<2 hex>/<64 hex>.
func TreeKey(d string) string { return digest.Digest(d).Key("trees") }

// ParseDigest checks that d is "sha256:" followed by 64 lower-case hex digits
// and returns the hex part (digest.Parse, for this package's callers).
func ParseDigest(d string) (string, error) {
	p, err := digest.Parse(d)
	return p.Hex(), err
}

// Digest returns "sha256:<hex>" of b (digest.FromBytes).
func Digest(b []byte) string { return digest.FromBytes(b).String() }

// verifyReader hashes what it reads and, at EOF, fails with
// ErrDigestMismatch unless size and digest match. It also fails as soon as
// more than size bytes arrive.
type verifyReader struct {
	r       io.Reader
	h       hash.Hash
	want    string // hex; empty: size only
	size    int64
	n       int64
	checked bool
	failed  error
}

func newVerifyReader(r io.Reader, size int64, digest string) (*verifyReader, error) {
	v := &verifyReader{r: r, size: size}
	if digest != "" {
		hexd, err := ParseDigest(digest)
		if err != nil {
			return nil, err
		}
		v.want = hexd
		v.h = sha256.New()
	}
	return v, nil
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.failed != nil {
		return 0, v.failed
	}
	n, err := v.r.Read(p)
	// A failing read withholds its bytes, so an upload with a declared
	// Content-Length never completes with bad content.
	if v.n+int64(n) > v.size {
		v.failed = fmt.Errorf("%w: more than the expected %d bytes", ErrDigestMismatch, v.size)
		return 0, v.failed
	}
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	if v.n == v.size && !v.checked {
		v.checked = true
		if v.h != nil {
			if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
				v.failed = fmt.Errorf("%w: got sha256:%s, want sha256:%s", ErrDigestMismatch, got, v.want)
				return 0, v.failed
			}
		}
	}
	if err == io.EOF && v.n != v.size {
		v.failed = fmt.Errorf("%w: got %d bytes, want %d", ErrDigestMismatch, v.n, v.size)
		return 0, v.failed
	}
	return n, err
}

// NewVerifyReader returns a reader over r that fails with ErrDigestMismatch
// at EOF unless exactly size bytes hashing to digest ("sha256:<hex>") were
// read. Callers reading blobs back use it to check every byte.
func NewVerifyReader(r io.Reader, size int64, digest string) (io.Reader, error) {
	return newVerifyReader(r, size, digest)
}

// validKey refuses keys that could escape the store root.
func validKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return fmt.Errorf("invalid key %q", key)
	}
	for _, p := range strings.Split(key, "/") {
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("invalid key %q", key)
		}
	}
	return nil
}
