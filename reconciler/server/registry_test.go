package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/registry/blobs"
)

// copyTree copies the fixture folder src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

type logBuf struct{ bytes.Buffer }

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(&l.Buffer, nil)) }

const acceptManifests = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

// TestRegistryMigratesPreviousData: the data folder written by the
// previous built-in registry (testdata/registry-v0, made with it) is
// migrated once at start and serves the same manifests and blobs.
func TestRegistryMigratesPreviousData(t *testing.T) {
	data := t.TempDir()
	copyTree(t, filepath.Join("testdata", "registry-v0"), data)
	open := func(lb *logBuf) *httptest.Server {
		t.Helper()
		r, err := NewRegistry(context.Background(), RegistryOptions{Dir: filepath.Join(data, "registry"),
			Store: "file://" + filepath.Join(data, "blobs"), Secret: "s", Logger: lb.logger()})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewServer(r)
		t.Cleanup(ts.Close)
		return ts
	}
	var first, second logBuf
	ts := open(&first)
	if !strings.Contains(first.String(), "migrated the previous built-in registry") || !strings.Contains(first.String(), "manifests=8") {
		t.Fatalf("no migration log line:\n%s", first.String())
	}
	check := func(ts *httptest.Server) {
		t.Helper()
		f, err := os.Open(filepath.Join("testdata", "registry-v0", "expected.txt"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		n := 0
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) != 3 || strings.HasPrefix(fs[0], "#") {
				continue
			}
			n++
			repo, ref, want := fs[0], fs[1], fs[2]
			req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v2/"+repo+"/manifests/"+ref, nil)
			req.Header.Set("Accept", acceptManifests)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s:%s: %d %s", repo, ref, resp.StatusCode, body)
				continue
			}
			h := sha256.Sum256(body)
			if got := "sha256:" + hex.EncodeToString(h[:]); got != want || resp.Header.Get("Docker-Content-Digest") != want {
				t.Errorf("%s:%s: digest %s (header %s), want %s", repo, ref, got, resp.Header.Get("Docker-Content-Digest"), want)
			}
			// Every blob it names is served and hashes to its digest.
			for _, d := range blobDigests(body) {
				resp, err := http.Get(ts.URL + "/v2/" + repo + "/blobs/" + d)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				h := sha256.Sum256(b)
				if resp.StatusCode != 200 || "sha256:"+hex.EncodeToString(h[:]) != d {
					t.Errorf("%s blob %s: %d, %d bytes", repo, d, resp.StatusCode, len(b))
				}
			}
		}
		if n != 7 {
			t.Fatalf("expected.txt: %d references, want 7", n)
		}
	}
	check(ts)
	if _, err := os.Stat(filepath.Join(data, "registry", "manifests"+migratedSuffix)); err != nil {
		t.Errorf("the old manifests are not kept: %v", err)
	}
	ts.Close()
	check(open(&second))
	if strings.Contains(second.String(), "migrated") {
		t.Errorf("migrated twice:\n%s", second.String())
	}
}

// blobDigests returns the config and layer digests of an image manifest.
func blobDigests(manifest []byte) []string {
	var m struct {
		Config *struct{ Digest string }  `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	json.Unmarshal(manifest, &m)
	var ds []string
	if m.Config != nil {
		ds = append(ds, m.Config.Digest)
	}
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// TestRegistryS3Replicas: two registries on one S3 bucket (MinIO) serve
// what either was pushed.
func TestRegistryS3Replicas(t *testing.T) {
	addr := testenv.Require(t, testenv.MinIO)
	t.Setenv("AWS_ACCESS_KEY_ID", testenv.Require(t, testenv.MinIOUser))
	t.Setenv("AWS_SECRET_ACCESS_KEY", testenv.Require(t, testenv.MinIOPass))
	ctx := context.Background()
	store := fmt.Sprintf("s3://cairn-registry-test/%s?endpoint=%s&insecure=1", url.PathEscape(strings.ToLower(t.Name())+"-"+NewToken()[:8]), addr)
	// The bucket is created by cairn's blob store, as cairn serve does.
	if _, err := blobStoreFor(ctx, store); err != nil {
		t.Fatal(err)
	}
	var regs [2]*httptest.Server
	for i := range regs {
		r, err := NewRegistry(ctx, RegistryOptions{Dir: t.TempDir(), Store: store, Secret: "shared"})
		if err != nil {
			t.Fatal(err)
		}
		regs[i] = httptest.NewServer(r)
		defer regs[i].Close()
	}
	blob := []byte("weights in s3")
	h := sha256.Sum256(blob)
	d := "sha256:" + hex.EncodeToString(h[:])
	// The upload starts on one replica and finishes on the other.
	resp, err := http.Post(regs[0].URL+"/v2/models/s3/blobs/uploads/", "", nil)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	q.Set("digest", d)
	req, _ := http.NewRequest(http.MethodPut, regs[1].URL+loc.Path+"?"+q.Encode(), bytes.NewReader(blob))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("finish upload on the other replica: %v %d %s", err, resp.StatusCode, b)
	}
	resp.Body.Close()
	resp, err = http.Get(regs[0].URL + "/v2/models/s3/blobs/" + d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, blob) {
		t.Fatalf("GET from the first replica: %d %q", resp.StatusCode, got)
	}
}

func blobStoreFor(ctx context.Context, u string) (any, error) { return blobs.Open(ctx, u) }

// TestRegistryGCHoldsWrites: while a collection runs (the gate held),
// writes wait and reads go on; GC of a fresh registry removes nothing.
func TestRegistryGCHoldsWrites(t *testing.T) {
	ctx := context.Background()
	r, err := NewRegistry(ctx, RegistryOptions{Dir: t.TempDir(), Secret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(r)
	defer ts.Close()
	r.gate.Lock() // as GC holds it
	wrote := make(chan int, 1)
	go func() {
		resp, err := http.Post(ts.URL+"/v2/models/g/blobs/uploads/", "", nil)
		if err != nil {
			wrote <- 0
			return
		}
		resp.Body.Close()
		wrote <- resp.StatusCode
	}()
	resp, err := http.Get(ts.URL + "/v2/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a read while writes are held: %v %v", resp, err)
	}
	resp.Body.Close()
	select {
	case code := <-wrote:
		t.Fatalf("a write went through while held: %d", code)
	case <-time.After(300 * time.Millisecond):
	}
	r.gate.Unlock()
	if code := <-wrote; code != http.StatusAccepted {
		t.Fatalf("the held write, once released: %d", code)
	}
	res, err := r.GC(ctx, true)
	if err != nil || res.BlobsBefore != res.BlobsAfter {
		t.Fatalf("GC of an empty registry: %+v, %v", res, err)
	}
}
