package blobs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/blobs"
)

// backends returns one fresh store per backend; S3 needs MinIO.
func backends(t *testing.T) map[string]func(t *testing.T) blobs.Store {
	return map[string]func(t *testing.T) blobs.Store{
		"folder": func(t *testing.T) blobs.Store {
			s, err := blobs.Open(context.Background(), "file://"+t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T) blobs.Store { return OpenMinIO(t) },
	}
}

var bucketSeq struct {
	sync.Mutex
	n int
}

// OpenMinIO opens a store under a fresh prefix of a test bucket on the
// MinIO that scripts/services/minio.sh started.
func OpenMinIO(t testing.TB) blobs.Store {
	addr := testenv.Require(t, testenv.MinIO)
	t.Setenv("AWS_ACCESS_KEY_ID", testenv.Require(t, testenv.MinIOUser))
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.Require(t, testenv.MinIOPass))
	bucketSeq.Lock()
	bucketSeq.n++
	n := bucketSeq.n
	bucketSeq.Unlock()
	prefix := fmt.Sprintf("%s-%d-%x", strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), n, randBytes(t, 4))
	u := "s3://cairn-blobs-test/" + url.PathEscape(prefix) + "?endpoint=" + addr + "&insecure=1"
	s, err := blobs.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContract runs the same checks against every backend.
func TestContract(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tests := []struct {
				name string
				run  func(t *testing.T, s blobs.Store)
			}{
				{"put get stat", func(t *testing.T, s blobs.Store) {
					data := randBytes(t, 100_000)
					d := blobs.Digest(data)
					key := blobs.BlobKey(d)
					if !strings.HasPrefix(key, "blobs/sha256/"+d[7:9]+"/"+d[7:]) {
						t.Fatalf("key %s", key)
					}
					w, err := s.Put(ctx, key, bytes.NewReader(data), int64(len(data)), d)
					if err != nil || !w {
						t.Fatalf("put: %v %v", w, err)
					}
					info, err := s.Stat(ctx, key)
					if err != nil || info.Size != int64(len(data)) {
						t.Fatalf("stat: %+v %v", info, err)
					}
					for _, r := range []struct{ off, n int64 }{{0, -1}, {0, 10}, {5000, 1000}, {99_990, -1}, {99_999, 1}} {
						rc, err := s.Get(ctx, key, r.off, r.n)
						if err != nil {
							t.Fatalf("get %v: %v", r, err)
						}
						got, err := io.ReadAll(rc)
						rc.Close()
						end := int64(len(data))
						if r.n >= 0 {
							end = r.off + r.n
						}
						if err != nil || !bytes.Equal(got, data[r.off:end]) {
							t.Fatalf("get %v: %d bytes, %v", r, len(got), err)
						}
					}
				}},
				{"put existing is skipped and not read", func(t *testing.T, s blobs.Store) {
					data := []byte("hello")
					d := blobs.Digest(data)
					if _, err := s.Put(ctx, blobs.BlobKey(d), bytes.NewReader(data), 5, d); err != nil {
						t.Fatal(err)
					}
					w, err := s.Put(ctx, blobs.BlobKey(d), failReader{}, 5, d)
					if err != nil || w {
						t.Fatalf("second put: written=%v err=%v", w, err)
					}
				}},
				{"digest mismatch leaves nothing", func(t *testing.T, s blobs.Store) {
					d := blobs.Digest([]byte("right"))
					_, err := s.Put(ctx, blobs.BlobKey(d), strings.NewReader("wrong"), 5, d)
					if !errors.Is(err, blobs.ErrDigestMismatch) {
						t.Fatalf("want ErrDigestMismatch, got %v", err)
					}
					if _, err := s.Stat(ctx, blobs.BlobKey(d)); !errors.Is(err, blobs.ErrNotFound) {
						t.Fatalf("want ErrNotFound after bad put, got %v", err)
					}
				}},
				{"size mismatch leaves nothing", func(t *testing.T, s blobs.Store) {
					d := blobs.Digest([]byte("short"))
					_, err := s.Put(ctx, blobs.BlobKey(d), strings.NewReader("short"), 6, d)
					if !errors.Is(err, blobs.ErrDigestMismatch) {
						t.Fatalf("want ErrDigestMismatch, got %v", err)
					}
					if _, err := s.Stat(ctx, blobs.BlobKey(d)); !errors.Is(err, blobs.ErrNotFound) {
						t.Fatalf("want ErrNotFound, got %v", err)
					}
				}},
				{"missing", func(t *testing.T, s blobs.Store) {
					key := blobs.BlobKey(blobs.Digest([]byte("absent")))
					if _, err := s.Stat(ctx, key); !errors.Is(err, blobs.ErrNotFound) {
						t.Fatalf("stat: %v", err)
					}
					if _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, blobs.ErrNotFound) {
						t.Fatalf("get: %v", err)
					}
				}},
				{"invalid keys", func(t *testing.T, s blobs.Store) {
					for _, k := range []string{"", "/abs", "a/../b", "a//b", "..", "a/./b"} {
						if _, err := s.Put(ctx, k, strings.NewReader(""), 0, ""); err == nil {
							t.Errorf("put %q accepted", k)
						}
					}
				}},
				{"concurrent writers of one blob", func(t *testing.T, s blobs.Store) {
					data := randBytes(t, 300_000)
					d := blobs.Digest(data)
					var wg sync.WaitGroup
					errs := make(chan error, 8)
					for range 8 {
						wg.Add(1)
						go func() {
							defer wg.Done()
							_, err := s.Put(ctx, blobs.BlobKey(d), bytes.NewReader(data), int64(len(data)), d)
							errs <- err
						}()
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						if err != nil {
							t.Fatal(err)
						}
					}
					rc, err := s.Get(ctx, blobs.BlobKey(d), 0, -1)
					if err != nil {
						t.Fatal(err)
					}
					defer rc.Close()
					got, _ := io.ReadAll(rc)
					if !bytes.Equal(got, data) {
						t.Fatal("content differs after concurrent puts")
					}
				}},
				{"list by prefix", func(t *testing.T, s blobs.Store) {
					var want []string
					for i := range 5 {
						data := []byte(fmt.Sprint("blob ", i))
						d := blobs.Digest(data)
						want = append(want, blobs.BlobKey(d))
						if _, err := s.Put(ctx, blobs.BlobKey(d), bytes.NewReader(data), int64(len(data)), d); err != nil {
							t.Fatal(err)
						}
					}
					tree := []byte("tree")
					if _, err := s.Put(ctx, blobs.TreeKey(blobs.Digest(tree)), bytes.NewReader(tree), 4, blobs.Digest(tree)); err != nil {
						t.Fatal(err)
					}
					var got []string
					err := s.List(ctx, "blobs/sha256/", func(i blobs.Info) error {
						got = append(got, i.Key)
						if i.Size != 6 {
							t.Errorf("%s: size %d", i.Key, i.Size)
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					sort.Strings(want)
					sort.Strings(got)
					if strings.Join(got, ",") != strings.Join(want, ",") {
						t.Fatalf("list:\n got %v\nwant %v", got, want)
					}
				}},
				{"empty blob", func(t *testing.T, s blobs.Store) {
					d := blobs.Digest(nil)
					if _, err := s.Put(ctx, blobs.BlobKey(d), strings.NewReader(""), 0, d); err != nil {
						t.Fatal(err)
					}
					rc, err := s.Get(ctx, blobs.BlobKey(d), 0, -1)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(rc)
					rc.Close()
					if len(b) != 0 {
						t.Fatal("not empty")
					}
				}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) { tc.run(t, open(t)) })
			}
		})
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestOpenURLs(t *testing.T) {
	for _, u := range []string{"", "http://x", "s3:///nobucket", "file://host/x", "relative/path", "file://"} {
		if _, err := blobs.Open(context.Background(), u); err == nil {
			t.Errorf("Open(%q) accepted", u)
		}
	}
}
