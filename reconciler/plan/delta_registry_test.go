package plan

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/registry/models"
)

// writeModel writes a model folder: weights.safetensors of size bytes from
// seed, with edit bytes in the middle from another seed, and a small
// config.json; fixed mtimes, so one folder gives one digest.
func writeModel(t *testing.T, seed byte, size, edit int64) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	base, other := rand.NewChaCha8([32]byte{seed}), rand.NewChaCha8([32]byte{seed, 1})
	mid := (size - edit) / 2 &^ (1<<16 - 1)
	buf := make([]byte, 1<<16)
	for off := int64(0); off < size; off += int64(len(buf)) {
		base.Read(buf)
		if edit > 0 && off >= mid && off < mid+edit {
			other.Read(buf)
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"layers": 12}`), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"weights.safetensors", "config.json"} {
		os.Chtimes(filepath.Join(dir, n), at, at)
	}
	return dir
}

// pushModel pushes dir to ref and returns the digest-pinned reference.
func pushModel(t *testing.T, ref, dir string, noIndex bool) *models.PushResult {
	t.Helper()
	res, err := models.Push(context.Background(), ref, []string{dir}, models.PushOptions{
		Options: models.Options{PlainHTTP: true}, Name: "m", Version: "1", NoChunkIndex: noIndex,
		Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !noIndex && res.ChunkIndex == "" {
		t.Fatalf("push %s: no chunk index (%v)", ref, res.Warnings)
	}
	return res
}

// deltaRepo is one model at artifact and one release of it over the
// targets labelled env=prod in two waves.
func deltaRepo(artifact string) *manifests.Snapshot {
	return manifests.NewSnapshot(manifests.Objects{
		Models: []manifests.Model{{Metadata: manifests.ObjectMeta{Name: "m"}, Spec: manifests.ModelSpec{Version: "2", Artifact: artifact}}},
		DeviceProfiles: []manifests.DeviceProfile{{Metadata: manifests.ObjectMeta{Name: "prod"},
			Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
		RolloutPolicies: []manifests.RolloutPolicy{{Metadata: manifests.ObjectMeta{Name: "halves"},
			Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{{Percent: 50}, {Percent: 100}}}}},
		Releases: []manifests.Release{{Metadata: manifests.ObjectMeta{Name: "m-prod"},
			Spec: manifests.ReleaseSpec{Model: "m", Targets: []manifests.ReleaseTarget{{Profile: "prod"}}, RolloutPolicy: "halves"}}},
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDeltaBytesRealArtifacts pushes v1 of a model (a 64 MiB weight file
// and a small config), v2 with 16 MiB of the weights rewritten in the
// middle, and v0 with other weights and no chunk index, then plans v2 over
// targets running v1, v2, v0 and nothing: a target on v1 moves about the
// 16 MiB that changed, exactly what a delta pull of v2 from v1's cache
// downloads, not the 64 MiB weight file; one on v0 moves the whole weights
// (and a note says why); without chunk indexes, or with the registry
// unreachable for them, the plan counts whole layers and says so. Against
// the in-process registry and Debian's docker-registry
// ($CAIRN_TEST_REGISTRY).
func TestDeltaBytesRealArtifacts(t *testing.T) {
	registries := []struct {
		name string
		host func(t *testing.T) string
	}{
		{"in-process", func(t *testing.T) string {
			srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
			t.Cleanup(srv.Close)
			return strings.TrimPrefix(srv.URL, "http://")
		}},
		{"docker-registry", func(t *testing.T) string { return testenv.Require(t, testenv.Registry) }},
	}
	const size, edit = 64 << 20, 16 << 20
	for _, reg := range registries {
		t.Run(reg.name, func(t *testing.T) {
			host := reg.host(t)
			repo := host + "/plan/delta" + strconv.FormatInt(time.Now().UnixNano(), 36)
			v1 := pushModel(t, repo+":v1", writeModel(t, 1, size, 0), false)
			v2 := pushModel(t, repo+":v2", writeModel(t, 1, size, edit), false)
			v0 := pushModel(t, repo+":v0", writeModel(t, 9, size, 0), true)
			var weights, whole int64 // the weight layer's size, v2's size
			for _, f := range v2.Files {
				if f.Path == "weights.safetensors" {
					weights = f.Size
				}
			}
			info, err := models.Inspect(context.Background(), v2.Ref, models.Options{PlainHTTP: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range info.Layers {
				whole += l.Size
			}

			// What a delta pull of v2 really downloads, holding v1.
			cache := t.TempDir()
			popts := models.PullOptions{Options: models.Options{PlainHTTP: true}, CacheDir: cache}
			if _, err := models.Pull(context.Background(), v1.Ref, t.TempDir(), popts); err != nil {
				t.Fatal(err)
			}
			pulled, err := models.Pull(context.Background(), v2.Ref, t.TempDir(), popts)
			if err != nil {
				t.Fatal(err)
			}
			var ranged int64
			for _, d := range pulled.Deltas {
				if d.Fallback != "" {
					t.Fatalf("delta pull fell back: %+v", d)
				}
				ranged += d.DownloadedBytes
			}

			inv := &fleet.Inventory{}
			for name, runs := range map[string]string{"on-v1-a": v1.Digest, "on-v1-b": v1.Digest, "on-v2": v2.Digest, "on-v0": v0.Digest, "fresh": ""} {
				tg := fleet.Target{Name: name, Labels: map[string]string{"env": "prod"}}
				if runs != "" {
					tg.Models = map[string]string{"m-prod": runs}
				}
				inv.Targets = append(inv.Targets, tg)
			}
			inspector := RegistryInspector(func(string) bool { return true })
			cut := WithTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
				return nil, errors.New("dial tcp: connection refused")
			}))
			// counted counts the index reads: once per artifact, however
			// many targets and pairs need it.
			var calls atomic.Int32
			regIx := RegistryChunkIndexer(func(string) bool { return true })
			counted := ChunkIndexerFunc(func(ctx context.Context, ref string) (map[string][]Chunk, error) {
				calls.Add(1)
				return regIx.ChunkIndex(ctx, ref)
			})
			type want struct{ bytes, whole int64 }
			tests := []struct {
				name    string
				indexes ChunkIndexer
				targets map[string]want // bytes < 0: between 16 and 18 MiB, and what the pull downloaded
				note    string          // in the release's notes
			}{
				{"chunk indexes", counted, map[string]want{
					"on-v1-a": {-1, weights}, "on-v1-b": {-1, weights}, "on-v2": {0, 0}, "on-v0": {weights, weights}, "fresh": {whole, whole},
				}, "1 target running " + v0.Digest[:19] + ": that version has no chunk index: large layers count whole"},
				{"whole layers", nil, map[string]want{
					"on-v1-a": {whole, whole}, "on-v1-b": {whole, whole}, "on-v2": {0, 0}, "on-v0": {whole, whole}, "fresh": {whole, whole},
				}, ""},
				{"registry unreachable for indexes", RegistryChunkIndexer(func(string) bool { return true }, cut), map[string]want{
					"on-v1-a": {weights, weights}, "on-v1-b": {weights, weights}, "on-v2": {0, 0}, "on-v0": {weights, weights}, "fresh": {whole, whole},
				}, "2 targets running " + v1.Digest[:19] + ": the chunk index of " + v2.Digest[:19] + " cannot be read"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					start := time.Now()
					p, err := Compute(context.Background(), deltaRepo(v2.Ref), inv, Options{Inspector: inspector, ChunkIndexes: tt.indexes, Now: now})
					if err != nil {
						t.Fatal(err)
					}
					elapsed := time.Since(start)
					r := p.Releases[0]
					if r.Unavailable != "" || r.Held != "" {
						t.Fatalf("release unavailable %q held %q", r.Unavailable, r.Held)
					}
					got := map[string]want{}
					for _, d := range r.Downloads {
						got[d.Target] = want{d.Bytes, d.WholeBytes}
					}
					var sum, sumWhole int64
					for name, w := range tt.targets {
						g, ok := got[name]
						if !ok {
							g = want{*r.ModelBytes, *r.ModelBytes}
						}
						if w.bytes < 0 {
							if g.bytes < edit || g.bytes > edit+2<<20 || g.bytes != ranged {
								t.Errorf("%s: moves %d bytes, want 16..18 MiB and what the delta pull downloaded (%d)", name, g.bytes, ranged)
							}
							w.bytes = g.bytes
						}
						if g != w {
							t.Errorf("%s: moves %d (%d whole), want %d (%d whole)", name, g.bytes, g.whole, w.bytes, w.whole)
						}
						sum += w.bytes
						sumWhole += w.whole
					}
					if *r.Bytes != sum || *r.WholeBytes != sumWhole || *p.Summary.Bytes != sum || *p.Summary.WholeBytes != sumWhole {
						t.Errorf("release moves %d (%d whole), summary %d (%d whole), want %d (%d whole)", *r.Bytes, *r.WholeBytes,
							*p.Summary.Bytes, *p.Summary.WholeBytes, sum, sumWhole)
					}
					var waves, wavesWhole int64
					for _, w := range r.Waves {
						waves += *w.Bytes
						wavesWhole += *w.WholeBytes
					}
					if waves != sum || wavesWhole != sumWhole {
						t.Errorf("waves move %d (%d whole), want %d (%d whole)", waves, wavesWhole, sum, sumWhole)
					}
					if tt.indexes != nil && tt.name == "chunk indexes" && calls.Load() != 3 {
						t.Errorf("%d chunk index reads, want 3 (v2, v1 and v0 once each)", calls.Load())
					}
					notes := strings.Join(r.Notes, "\n")
					if tt.note == "" && notes != "" || !strings.Contains(notes, tt.note) {
						t.Errorf("notes %q, want %q", notes, tt.note)
					}
					t.Logf("%s: plan in %v: %.1f MiB to move, %.1f MiB in whole layers (weights %.0f MiB; the delta pull downloaded %.2f MiB by Range)",
						tt.name, elapsed.Round(time.Millisecond), float64(sum)/(1<<20), float64(sumWhole)/(1<<20), float64(weights)/(1<<20), float64(ranged)/(1<<20))
				})
			}
		})
	}
}
