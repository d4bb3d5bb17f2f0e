package models

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/cairn-dev/cairn/internal/testenv"
)

// TestIntegrationDockerRegistry pushes to Debian's docker-registry, reads the
// manifest back with go-containerregistry (crane's library) and the crane and
// oras binaries when present, pulls byte-identical, and pulls what oras
// pushed.
func TestIntegrationDockerRegistry(t *testing.T) {
	reg := testenv.Require(t, testenv.Registry)
	src := writeTree(t, sampleModel)
	opts := PushOptions{Options: Options{PlainHTTP: true}, Name: "sample", Version: "2", TrainedOn: map[string]string{"ds": "sha256:" + hex.EncodeToString(make([]byte, 32))}}
	res, err := Push(bg, reg+"/it/sample:2", []string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.NewDigest(res.Ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(d)
	if err != nil {
		t.Fatal(err)
	}
	checkManifest(t, desc.Manifest)

	for _, tool := range [][]string{
		{"crane", "manifest", "--insecure", res.Ref},
		{"oras", "manifest", "fetch", "--plain-http", res.Ref},
	} {
		bin, err := lookPeer(t, tool[0])
		if err != nil {
			continue
		}
		out, err := exec.Command(bin, tool[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", tool, err)
		}
		checkManifest(t, out)
	}

	out := t.TempDir()
	pr, err := Pull(bg, res.Ref, out, PullOptions{Options: Options{PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Digest != res.Digest {
		t.Errorf("pulled %s, pushed %s", pr.Digest, res.Digest)
	}
	equalTrees(t, readTree(t, out), sampleModel)

	// What oras pushes, cairn pulls.
	oras, err := lookPeer(t, "oras")
	if err != nil {
		return
	}
	work := writeTree(t, map[string]string{"model.onnx": "oras weights", "config.json": "{}", "modelcfg.json": `{"descriptor":{},"config":{},"modelfs":{"type":"layers","diffIds":["sha256:x"]}}`})
	for i, args := range [][]string{
		{"--artifact-type", ArtifactTypeModelManifest},
		{}, // no artifactType: recognised by the config media type
	} {
		ref := reg + "/it/oras:" + string(rune('a'+i))
		cmd := exec.Command(oras, append([]string{"push", "--plain-http", ref,
			"--config", "modelcfg.json:" + MediaTypeModelConfig,
			"model.onnx:" + MediaTypeModelWeightRaw, "config.json:" + MediaTypeModelWeightConfigRaw}, args...)...)
		cmd.Dir = work
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("oras push: %v\n%s", err, b)
		}
		out := t.TempDir()
		if _, err := Pull(bg, ref, out, PullOptions{Options: Options{PlainHTTP: true}}); err != nil {
			t.Fatal(err)
		}
		equalTrees(t, readTree(t, out), map[string]string{"model.onnx": "oras weights", "config.json": "{}"})
	}
}

func checkManifest(t *testing.T, b []byte) {
	t.Helper()
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ArtifactTypeModelManifest || m.Config.MediaType != MediaTypeModelConfig {
		t.Errorf("manifest: artifactType %q, config %q", m.ArtifactType, m.Config.MediaType)
	}
	if len(m.Layers) != len(sampleModel) {
		t.Fatalf("%d layers", len(m.Layers))
	}
	for _, l := range m.Layers {
		p := l.Annotations[AnnotationFilepath]
		if _, ok := sampleModel[p]; !ok {
			t.Errorf("layer filepath %q", p)
		}
		if l.MediaType != rawMediaType(KindOf(p)) {
			t.Errorf("%s: media type %s", p, l.MediaType)
		}
	}
	if m.Annotations[AnnotationTrainedOn] == "" {
		t.Error("no trained-on annotation")
	}
}

// TestIntegrationFlatMemory pushes and pulls a 256 MiB file and checks the
// heap stays small: files stream, never sit in memory.
func TestIntegrationFlatMemory(t *testing.T) {
	reg := testenv.Require(t, testenv.Registry)
	const size = 256 << 20
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rand.NewChaCha8([32]byte{1}), size); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	f.Close()
	want := "sha256:" + hex.EncodeToString(h.Sum(nil))

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	res, err := Push(bg, reg+"/it/big:1", []string{dir}, PushOptions{Options: Options{PlainHTTP: true}})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	pr, err := Pull(bg, res.Ref, out, PullOptions{Options: Options{PlainHTTP: true}, CacheDir: t.TempDir()})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if len(pr.Files) != 1 || pr.Files[0].Digest != want || pr.Files[0].Size != size {
		t.Fatalf("pulled %+v, want %s", pr.Files, want)
	}
	t.Logf("peak heap in use while pushing and pulling %d MiB: %.1f MiB", size>>20, float64(peak.Load())/(1<<20))
	if peak.Load() > 48<<20 {
		t.Errorf("peak heap %d MiB: the file is not streamed", peak.Load()>>20)
	}
}

// TestIntegrationDigestCacheMount: with the digest cache, an unchanged model
// pushed to another repository of the same registry is mounted, not uploaded.
func TestIntegrationDigestCacheMount(t *testing.T) {
	reg := testenv.Require(t, testenv.Registry)
	src := writeTree(t, map[string]string{"model.onnx": "mount me " + time.Now().String()})
	opts := PushOptions{Options: Options{PlainHTTP: true}, DigestCache: t.TempDir()}
	if _, err := Push(bg, reg+"/it/mount-a:1", []string{src}, opts); err != nil {
		t.Fatal(err)
	}
	var uploads atomic.Int64
	opts.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodPatch {
			uploads.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	res, err := Push(bg, reg+"/it/mount-b:1", []string{src}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if n := uploads.Load(); n != 1 { // the config only
		t.Errorf("%d uploads, want 1 (the config): the weights were not mounted", n)
	}
	out := t.TempDir()
	if _, err := Pull(bg, res.Ref, out, PullOptions{Options: Options{PlainHTTP: true}}); err != nil {
		t.Fatal(err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// lookPeer finds a peer client (crane, oras). scripts/services/registry.sh
// installs both, so under CI a missing one fails the test; elsewhere its
// checks are skipped.
func lookPeer(t *testing.T, name string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed: scripts/services/registry.sh installs it under make test", name)
		}
		t.Logf("%s not installed: skipping its checks", name)
	}
	return bin, err
}
