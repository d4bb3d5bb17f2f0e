package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/models"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testRegistry is the registry the admission tests push to: the real one of
// $CAIRN_TEST_REGISTRY (Debian docker-registry, scripts/services), else an
// in-process go-containerregistry registry.
func testRegistry(t *testing.T) string {
	t.Helper()
	if host := os.Getenv("CAIRN_TEST_REGISTRY"); host != "" {
		return host
	}
	t.Log("CAIRN_TEST_REGISTRY is not set: an in-process registry")
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushModel pushes a small model (fixed bytes and mtime, so one digest) and
// returns its digest-pinned reference.
func pushModel(t *testing.T, host, repo string, content []byte) string {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(f, content, 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(f, at, at)
	res, err := models.Push(context.Background(), host+"/"+repo+":v1", []string{f},
		models.PushOptions{Options: models.Options{PlainHTTP: true}, Name: "m", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	return res.Ref
}

// admissionRepo is a commit's manifests: model m at artifact, trained on a
// dataset at dsDigest in the default store, one profile, one gated release.
func admissionRepo(artifact, dsDigest string) string {
	return `apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata: {name: train}
spec: {digest: ` + dsDigest + `, format: csv, license: CC-BY-4.0}
---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: m}
spec:
  version: 1.0.0
  artifact: ` + artifact + `
  trainedOn: [train]
  requires: {arch: [amd64]}
---
apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: edge}
spec: {selector: {matchLabels: {env: prod}}}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: p}
spec:
  waves: [{percent: 50}, {percent: 100}]
  policies: [fits-device]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: r}
spec:
  model: m
  targets: [{profile: edge}]
  rolloutPolicy: p
  runtime: {path: /var/lib/m}
`
}

// pushDataset versions a small CSV with its profile into the folder store.
func pushDataset(t *testing.T, storeDir string) string {
	t.Helper()
	bs, err := blobs.Open(context.Background(), "file://"+storeDir)
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "train.csv"), []byte("x,y\n1,0\n2,1\n3,1\n"), 0o644)
	res, err := datasets.Push(context.Background(), bs, src, datasets.PushOptions{Profile: true})
	if err != nil {
		t.Fatal(err)
	}
	return res.Digest
}

// TestPlanAndServeSameInput plans one commit against one inventory the way
// cairn plan does (plan.ForDir on the checkout, the inventory as
// /api/v1/inventory gives it, registry and dataset checks) and admits it
// the way serve does (Reconciler.Admit with serve's checks): the policy
// inputs are one document, kept in testdata/admission-input.golden (the
// registry host and the digests replaced by names).
func TestPlanAndServeSameInput(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t)
	ref := pushModel(t, host, "cairn-test/admission-same", bytes.Repeat([]byte("w"), 4096))
	storeDir := t.TempDir()
	ds := pushDataset(t, storeDir)
	repo := t.TempDir()
	os.MkdirAll(filepath.Join(repo, "manifests"), 0o755)
	if err := os.WriteFile(filepath.Join(repo, "manifests", "all.yaml"), []byte(admissionRepo(ref, ds)), 0o644); err != nil {
		t.Fatal(err)
	}
	inspector := plan.RegistryInspector(func(string) bool { return true })
	checker := plan.StoreChecker(map[string]string{"default": "file://" + storeDir})

	// serve: the reconciler's admission.
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	for i, arch := range []string{"amd64", "amd64", "arm64"} {
		id := "dev-" + string(rune('a'+i))
		if err := st.EnrollTarget(ctx, store.Target{ID: id, Name: id, Labels: map[string]string{"env": "prod"},
			Facts: fleet.Facts{Arch: arch, OS: "linux"}, CredHash: "h-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	var served []*policies.Input
	r := New(Options{Store: st, Inspector: inspector, Datasets: checker, OnInput: func(in *policies.Input) { served = append(served, in) }})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	err = r.syncTargets(ctx)
	inv := r.inventory() // what /api/v1/inventory serves, as cairn plan --server reads it
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Admit(ctx, source.Revision{Commit: strings.Repeat("c", 40), FS: os.DirFS(repo)}); err != nil {
		t.Fatal(err)
	}

	// cairn plan: the same checkout and inventory.
	var planned []*policies.Input
	p, err := plan.ForDir(ctx, repo, plan.DirOptions{NoBase: true, Inventory: inv, Live: true, Inspector: inspector, Datasets: checker,
		OnInput: func(in *policies.Input) { planned = append(planned, in) }})
	if err != nil {
		t.Fatal(err)
	}
	if p.Releases[0].Held != "" || p.Releases[0].Unavailable != "" {
		t.Fatalf("plan holds r: %+v", p.Releases[0])
	}
	if len(served) != 1 || len(planned) != 1 {
		t.Fatalf("%d inputs from serve, %d from plan; want one each", len(served), len(planned))
	}
	got := normalisedInput(t, served[0], host, ref, ds)
	if want := normalisedInput(t, planned[0], host, ref, ds); got != want {
		t.Fatalf("serve's policy input:\n%s\ncairn plan's:\n%s", got, want)
	}
	for _, want := range []string{`"size": 4096`, `"mediaType": "application/vnd.oci.image.manifest.v1+json"`, `"profile"`, `"mean": 2`} {
		if !strings.Contains(got, want) {
			t.Errorf("policy input lacks %s:\n%s", want, got)
		}
	}
	golden := filepath.Join("testdata", "admission-input.golden")
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Fatalf("policy input differs from %s (run with -update if intended):\n%s", golden, got)
	}
}

// normalisedInput is the input as indented JSON, without the evaluation
// time and with the registry host and digests named.
func normalisedInput(t *testing.T, in *policies.Input, host, ref, ds string) string {
	t.Helper()
	c := *in
	c.Now, c.NowNs = "", 0
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	_, md, _ := strings.Cut(ref, "@")
	s = strings.ReplaceAll(s, host, "REGISTRY")
	s = strings.ReplaceAll(s, md, "MODEL_DIGEST")
	s = strings.ReplaceAll(s, ds, "DATASET_DIGEST")
	return s + "\n"
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestMissingArtifactHeldInPlanAndServe: a real cairn serve (admission
// checks on) follows a Git repository whose first commit names a pushed
// model; a second commit names a digest the registry does not hold: cairn
// plan on the checkout holds the release and serve holds it with the same
// reason (condition and event) while its targets keep the first model. A
// third commit names a registry that is down: Waiting, not a denial, and
// still the first model.
func TestMissingArtifactHeldInPlanAndServe(t *testing.T) {
	ctx := context.Background()
	host := testRegistry(t)
	ref := pushModel(t, host, "cairn-test/admission-held", []byte("held test weights"))
	repoName, v1, _ := strings.Cut(ref, "@")
	url, work := gitServer(t)
	data := t.TempDir()
	ds := pushDataset(t, filepath.Join(data, "datasets")) // serve's default store
	commitPush(t, work, admissionRepo(ref, ds), "v1")
	base, stop := serveChecked(t, Config{Data: data, Repo: url, Interval: Duration(300 * time.Millisecond),
		ReconcileInterval: Duration(200 * time.Millisecond), EnrollToken: "enroll-secret", AdminToken: "admin", Enrollment: "auto"})
	defer stop()
	c := fleet.NewClient(base)
	a := enroll(t, c, "dev-a")
	waitDigest(t, c, a, v1, 20*time.Second)
	admin := fleet.NewAdminClient(base, "admin")
	checkPlan := func() plan.Release {
		t.Helper()
		p, err := plan.ForDir(ctx, work, plan.DirOptions{NoBase: true, Inspector: plan.RegistryInspector(func(string) bool { return true }),
			Datasets: plan.StoreChecker(map[string]string{"default": "file://" + filepath.Join(data, "datasets")})})
		if err != nil {
			t.Fatal(err)
		}
		return p.Releases[0]
	}
	ready := func(reason string) (fleet.ReleaseInfo, fleet.Condition) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			info, err := admin.Release(ctx, "r")
			if err != nil {
				t.Fatal(err)
			}
			for _, cd := range info.Conditions {
				if cd.Type == TypeReady && cd.Reason == reason {
					return *info, cd
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("release r never got Ready reason %s: %+v", reason, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// v2: a digest nobody pushed, in the same repository.
	absent := repoName + "@sha256:" + strings.Repeat("ab", 32)
	commitPush(t, work, admissionRepo(absent, ds), "v2: absent digest")
	pr := checkPlan()
	if pr.Held == "" || !strings.Contains(pr.Held, absent) {
		t.Fatalf("plan of v2 = held %q unavailable %q, want held naming %s", pr.Held, pr.Unavailable, absent)
	}
	info, cd := ready(ReasonArtifactMissing)
	if cd.Status != "False" || !strings.Contains(cd.Message, pr.Held) {
		t.Fatalf("serve's Ready condition = %+v, want False with plan's reason %q", cd, pr.Held)
	}
	if info.Digest != v1 {
		t.Fatalf("held release r runs %s, want the admitted %s kept", info.Digest, v1)
	}
	evs, err := admin.Events(ctx, fleet.EventFilter{Type: "ArtifactMissing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Release != "r" || evs[0].Message != pr.Held {
		t.Fatalf("ArtifactMissing events = %+v, want one for r saying %q", evs, pr.Held)
	}

	// v3: the registry is down.
	down := closedAddr(t) + "/models/m@" + v1
	commitPush(t, work, admissionRepo(down, ds), "v3: registry down")
	if pr := checkPlan(); pr.Held != "" || pr.Unavailable == "" {
		t.Fatalf("plan of v3 = held %q unavailable %q, want unavailable only", pr.Held, pr.Unavailable)
	}
	info, cd = ready(ReasonArtifactUnavailable)
	for _, x := range info.Conditions {
		if x.Type == TypeStalled && x.Status == "True" {
			t.Fatalf("a registry that is down stalls r: %+v", info.Conditions)
		}
	}
	if info.Digest != v1 || info.Denied != "" {
		t.Fatalf("r while the registry is down = digest %s denied %q, want %s kept and no denial", info.Digest, info.Denied, v1)
	}
	if evs, _ := admin.Events(ctx, fleet.EventFilter{Type: "PolicyDenied"}); len(evs) != 0 {
		t.Fatalf("PolicyDenied events while the registry is down: %+v", evs)
	}
	t.Logf("held: %s; waiting: %s", pr.Held, cd.Message)
}
