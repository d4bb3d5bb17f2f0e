package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/models"
)

// TestPlanLiveAndRegistry: sizes come from a real (in-process) OCI registry,
// the inventory and the lineage facts from a server (--server, bearer token),
// and the promotion policy admits a release whose `after:` release has run
// the same digest healthily for long enough.
func TestPlanLiveAndRegistry(t *testing.T) {
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")

	weights := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(weights, []byte(strings.Repeat("w", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	pushed, err := models.Push(ctx, host+"/models/m:1", []string{weights}, models.PushOptions{Options: models.Options{PlainHTTP: true}, Name: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	art, err := models.Inspect(ctx, pushed.Ref, models.Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	var layerBytes int64
	for _, l := range art.Layers {
		layerBytes += l.Size
	}

	repo := t.TempDir()
	writeFile(t, filepath.Join(repo, "cairn.yaml"), `apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: "1"
  artifact: `+pushed.Ref+`
  requires: {memory: 1Gi, arch: [arm64]}
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: prod}
spec: {selector: {matchLabels: {env: prod}}}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  waves: [{percent: 50}, {percent: 100}]
  policies: [promotion, fits-device]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: m-prod}
spec:
  model: m
  targets: [{profile: prod}]
  rolloutPolicy: p
  after: {release: m-staging, healthyFor: 24h}
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: staging}
spec: {selector: {matchLabels: {env: staging}}}
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: m-staging}
spec:
  model: m
  targets: [{profile: staging}]
`)
	since := time.Now().Add(-48 * time.Hour)
	inv := fleet.Inventory{
		Targets: []fleet.Target{
			{Name: "t1", Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "arm64", Memory: 8 << 30}},
			{Name: "t2", Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "arm64", Memory: 8 << 30}, Models: map[string]string{"m-prod": pushed.Digest}},
			{Name: "t3", Labels: map[string]string{"env": "prod"}, Facts: fleet.Facts{Arch: "arm64", Memory: 8 << 30}},
		},
		Releases: []fleet.ReleaseState{{Name: "m-staging", Digest: pushed.Digest, Phase: "Succeeded", HealthySince: &since}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != fleet.PathInventory || r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"error": "unauthorized"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(inv)
	}))
	defer srv.Close()

	t.Setenv("CAIRN_TOKEN", "s3cret")
	out, err := runCairn(t, "plan", repo, "--no-base", "--server", srv.URL, "--plain-http", "-o", "json")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	var p struct {
		Live     bool
		Releases []struct {
			Name       string
			UpToDate   int
			ModelBytes int64
			Bytes      int64
			Verdicts   []struct{ Policy, Result, Message string }
		}
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	r := p.Releases[0] // m-prod
	if !p.Live || r.UpToDate != 1 || r.ModelBytes != layerBytes || r.Bytes != 2*layerBytes {
		t.Errorf("live %v, upToDate %d, modelBytes %d, bytes %d; want live, 1, %d, %d", p.Live, r.UpToDate, r.ModelBytes, r.Bytes, layerBytes, 2*layerBytes)
	}
	for _, v := range r.Verdicts {
		if v.Result != "allow" {
			t.Errorf("verdict %+v", v)
		}
	}

	// Staging healthy for only 2 hours: promotion denies.
	since = time.Now().Add(-2 * time.Hour)
	out, err = runCairn(t, "plan", repo, "--no-base", "--server", srv.URL, "--plain-http")
	if exitCode(err) != 2 || !strings.Contains(out, "m-staging healthy on this digest for 2h00m, needs 24h0m0s") {
		t.Errorf("exit %d, output:\n%s", exitCode(err), out)
	}
	// A rolled-back release shows its live rollout and pinned last good digest.
	inv.Releases[0].Phase, inv.Releases[0].LastGood, inv.Releases[0].Message = "RolledBack", "sha256:"+strings.Repeat("1", 64), "1 of 1 targets failed"
	out, _ = runCairn(t, "plan", repo, "--no-base", "--server", srv.URL, "--plain-http")
	if !strings.Contains(out, "Live rollout: **RolledBack**") || !strings.Contains(out, "last good `sha256:111111111111`") {
		t.Errorf("rolled-back release not shown:\n%s", out)
	}
	// A wrong token is an error, not a plan.
	t.Setenv("CAIRN_TOKEN", "wrong")
	if _, err := runCairn(t, "plan", repo, "--no-base", "--server", srv.URL); exitCode(err) != 1 {
		t.Errorf("wrong token: exit %d (%v)", exitCode(err), err)
	}
}
