package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/registry/models"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata")

// pushDeltaVersion pushes a model folder whose weights.safetensors is size
// bytes from one seed, with edit bytes in the middle from another, and a
// small config.json, with fixed times: the same arguments give the same
// digest on every run.
func pushDeltaVersion(t *testing.T, ref string, size, edit int64) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	base, other := rand.NewChaCha8([32]byte{7}), rand.NewChaCha8([32]byte{8})
	buf := make([]byte, 1<<16)
	for off := int64(0); off < size; off += int64(len(buf)) {
		base.Read(buf)
		if edit > 0 && off >= (size-edit)/2 && off < (size+edit)/2 {
			other.Read(buf)
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeFile(t, filepath.Join(dir, "config.json"), `{"layers": 12}`)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, n := range []string{"weights.safetensors", "config.json"} {
		os.Chtimes(filepath.Join(dir, n), at, at)
	}
	res, err := models.Push(context.Background(), ref, []string{dir}, models.PushOptions{
		Options: models.Options{PlainHTTP: true}, Name: "m", Version: "1", Created: at})
	if err != nil {
		t.Fatal(err)
	}
	return res.Ref
}

// TestPlanDeltaGolden: cairn plan of an update from v1 to v2 of a model
// whose 24 MiB weight file changed in 4 MiB in the middle, over targets
// running v1, v2 and nothing, against a real (in-process) registry: the
// plan shows per wave and per release the ~4 MiB each target on v1 moves
// next to the 24 MiB whole, in markdown and JSON (golden files, the
// registry's address replaced by REGISTRY); with --whole-layers it counts
// whole layers.
func TestPlanDeltaGolden(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	const size, edit = 24 << 20, 4 << 20
	v1 := pushDeltaVersion(t, host+"/models/m:1", size, 0)
	v2 := pushDeltaVersion(t, host+"/models/m:2", size, edit)
	_, d1, _ := strings.Cut(v1, "@")

	repo := t.TempDir()
	writeFile(t, filepath.Join(repo, "cairn.yaml"), `apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: "2"
  artifact: `+v2+`
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: prod}
spec: {selector: {matchLabels: {env: prod}}}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: halves}
spec:
  waves: [{percent: 50}, {percent: 100}]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: m-prod}
spec:
  model: m
  targets: [{profile: prod}]
  rolloutPolicy: halves
`)
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, `- {name: dev-1, labels: {env: prod}, models: {m-prod: "`+d1+`"}}
- {name: dev-2, labels: {env: prod}, models: {m-prod: "`+d1+`"}}
- {name: dev-3, labels: {env: prod}, models: {m-prod: "`+d1+`"}}
- {name: dev-4, labels: {env: prod}}
`)
	for _, format := range []string{"markdown", "json"} {
		out, err := runCairn(t, "plan", repo, "--no-base", "--plain-http", "--inventory", inv, "-o", format)
		if err != nil {
			t.Fatalf("plan -o %s: %v\n%s", format, err, out)
		}
		out = strings.ReplaceAll(out, host, "REGISTRY")
		ext := map[string]string{"markdown": ".md", "json": ".json"}[format]
		golden := filepath.Join("testdata", "plan-delta"+ext)
		if *updateGolden {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -run TestPlanDeltaGolden -update writes it)", err)
		}
		if !bytes.Equal([]byte(out), want) {
			t.Errorf("plan -o %s differs from %s (go test -run TestPlanDeltaGolden -update rewrites it); got:\n%s", format, golden, out)
		}
	}

	out, err := runCairn(t, "plan", repo, "--no-base", "--plain-http", "--whole-layers", "--inventory", inv, "-o", "json")
	if err != nil {
		t.Fatalf("plan --whole-layers: %v\n%s", err, out)
	}
	var p struct {
		Summary struct{ Bytes, WholeBytes int64 }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Summary.Bytes != p.Summary.WholeBytes || p.Summary.Bytes < 4*size {
		t.Errorf("--whole-layers: %d bytes (%d whole), want 4 whole models", p.Summary.Bytes, p.Summary.WholeBytes)
	}
}
