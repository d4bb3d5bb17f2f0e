package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/fleet/agent/kube"
	"github.com/cairn-dev/cairn/internal/kubetest"
)

// The driver leaves alone what a desired state keeps.
var _ agent.KeepingDriver = (*kube.Driver)(nil)

const (
	repo = "registry.example:5000/models/demo"
	d1   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

func desired(rel, digest, rollout string, k *fleet.Kubernetes) fleet.DesiredModel {
	return fleet.DesiredModel{Release: rel, Model: "demo", Artifact: repo + "@" + digest, Digest: digest, Rollout: rollout, Kubernetes: k}
}

func newDriver(t *testing.T, c *kubetest.Cluster, ns string) *kube.Driver {
	t.Helper()
	d, err := kube.New(kube.Config{Rest: c.Rest, Namespace: ns, CairnImage: "ghcr.io/cairn-dev/cairn:test", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// apply runs one Apply and returns the status of release rel.
func apply(t *testing.T, d *kube.Driver, rel string, models ...fleet.DesiredModel) fleet.ReleaseStatus {
	t.Helper()
	sts, err := d.Apply(context.Background(), models)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, s := range sts {
		if s.Release == rel {
			t.Logf("%s: %s %s", rel, s.Phase, s.Message)
			return s
		}
	}
	return fleet.ReleaseStatus{}
}

func get(t *testing.T, c *kubetest.Cluster, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := c.Dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func wantPhase(t *testing.T, st fleet.ReleaseStatus, phase, digest string, msg ...string) {
	t.Helper()
	if st.Phase != phase || st.Digest != digest {
		t.Fatalf("status = %s on %s (%s), want %s on %s", st.Phase, st.Digest, st.Message, phase, digest)
	}
	for _, m := range msg {
		if !strings.Contains(st.Message, m) {
			t.Fatalf("message %q does not say %q", st.Message, m)
		}
	}
}

// initPull is the artifact the Deployment's init container pulls.
func initPull(t *testing.T, dep *unstructured.Unstructured) string {
	t.Helper()
	ics, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "initContainers")
	if len(ics) != 1 {
		t.Fatalf("init containers: %v", ics)
	}
	cmd, _, _ := unstructured.NestedStringSlice(ics[0].(map[string]any), "command")
	if len(cmd) < 4 || strings.Join(cmd[:3], " ") != "cairn model pull" {
		t.Fatalf("init container command %v", cmd)
	}
	return cmd[3]
}

func managedByCairn(t *testing.T, u *unstructured.Unstructured, rel string) {
	t.Helper()
	l := u.GetLabels()
	if l[kube.LabelManagedBy] != "cairn" || l[kube.LabelRelease] != rel {
		t.Errorf("%s/%s labels %v", u.GetKind(), u.GetName(), l)
	}
	ok := slices.ContainsFunc(u.GetManagedFields(), func(m metav1.ManagedFieldsEntry) bool {
		return m.Manager == kube.FieldManager && m.Operation == metav1.ManagedFieldsOperationApply
	})
	if !ok {
		t.Errorf("%s/%s not server-side applied by field manager cairn: %v", u.GetKind(), u.GetName(), u.GetManagedFields())
	}
}

// TestDeploymentPath: on a cluster without KServe, a release becomes a
// Deployment (init container pulling by digest) and a Service; health
// follows the Deployment's status; a digest whose Deployment exceeds its
// progress deadline fails and the previous digest is applied again; the
// server's rollback is reported as such; a removed release is pruned.
func TestDeploymentPath(t *testing.T) {
	c := kubetest.Plain(t)
	ns := c.Namespace(t, "deploy")
	d := newDriver(t, c, ns)
	ctx := context.Background()
	replicas := 2
	k := &fleet.Kubernetes{Image: "ghcr.io/example/runtime:1", Replicas: &replicas, Port: 9000,
		Requests: map[string]string{"cpu": "500m"}, Limits: map[string]string{"memory": "1Gi"},
		Env: []fleet.EnvVar{{Name: "THREADS", Value: "2"}}}

	f, err := d.Facts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != fleet.KindCluster || !strings.HasPrefix(f.KubernetesVersion, "v1.") || f.KServe {
		t.Fatalf("facts = %+v; want a cluster with a version and no KServe", f)
	}

	st := apply(t, d, "demo", desired("demo", d1, "r1", k))
	wantPhase(t, st, fleet.PhaseVerifying, "", "Deployment/demo")
	dep := get(t, c, kubetest.Deployments, ns, "demo")
	svc := get(t, c, kubetest.Services, ns, "demo")
	if dep == nil || svc == nil {
		t.Fatalf("deployment %v service %v", dep != nil, svc != nil)
	}
	managedByCairn(t, dep, "demo")
	managedByCairn(t, svc, "demo")
	if got := initPull(t, dep); got != repo+"@"+d1 {
		t.Fatalf("init container pulls %s", got)
	}
	if r, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas %d", r)
	}
	cs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	b, _ := json.Marshal(cs)
	for _, want := range []string{`"image":"ghcr.io/example/runtime:1"`, `"containerPort":9000`, `"cpu":"500m"`, `"memory":"1Gi"`, `"THREADS"`, `"CAIRN_MODEL_DIR"`, `"readOnly":true`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("runtime container lacks %s: %s", want, b)
		}
	}
	inv, err := d.Inventories(ctx)
	if err != nil || inv["demo"] == nil || len(inv["demo"].Objects) != 2 {
		t.Fatalf("inventory %+v %v", inv["demo"], err)
	}

	// The deployment controller reports it available: healthy.
	if err := kubetest.SetDeploymentStatus(ctx, c.Dyn, ns, "demo", ""); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", k)), fleet.PhaseHealthy, d1)

	// d2 rolls out; its pods never become available.
	st = apply(t, d, "demo", desired("demo", d2, "r2", k))
	wantPhase(t, st, fleet.PhaseVerifying, d1)
	if got := initPull(t, get(t, c, kubetest.Deployments, ns, "demo")); got != repo+"@"+d2 {
		t.Fatalf("init container pulls %s, want d2", got)
	}
	if err := kubetest.SetDeploymentStatus(ctx, c.Dyn, ns, "demo", "ProgressDeadlineExceeded"); err != nil {
		t.Fatal(err)
	}
	st = apply(t, d, "demo", desired("demo", d2, "r2", k))
	wantPhase(t, st, fleet.PhaseFailed, d1, "ProgressDeadlineExceeded", "switched back to")
	if got := initPull(t, get(t, c, kubetest.Deployments, ns, "demo")); got != repo+"@"+d1 {
		t.Fatalf("after the failure the Deployment pulls %s, want d1 again", got)
	}
	// Asked again in the same rollout: stays failed, stays on d1.
	wantPhase(t, apply(t, d, "demo", desired("demo", d2, "r2", k)), fleet.PhaseFailed, d1)
	if got := initPull(t, get(t, c, kubetest.Deployments, ns, "demo")); got != repo+"@"+d1 {
		t.Fatalf("retry re-applied %s", got)
	}
	// The server rolls the release back to d1; the controller reports the
	// re-applied generation available.
	if err := kubetest.SetDeploymentStatus(ctx, c.Dyn, ns, "demo", ""); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r3", k)), fleet.PhaseRolledBack, d1, "after")

	// A release with prune: false, then both releases removed, while the
	// desired state keeps a third one (its record unreadable on the server).
	keep := false
	k2 := *k
	k2.Prune = &keep
	apply(t, d, "kept", desired("demo", d1, "r3", k), desired("kept", d1, "r1", &k2), desired("held", d1, "r1", k))
	if _, err := d.ApplyKeeping(ctx, nil, []string{"held"}); err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		gvr  schema.GroupVersionResource
		name string
		want bool
	}{
		{kubetest.Deployments, "demo", false}, {kubetest.Services, "demo", false}, {kubetest.ConfigMaps, kube.InventoryName("demo"), false},
		{kubetest.Deployments, "kept", true}, {kubetest.Services, "kept", true}, {kubetest.ConfigMaps, kube.InventoryName("kept"), false},
		{kubetest.Deployments, "held", true}, {kubetest.Services, "held", true}, {kubetest.ConfigMaps, kube.InventoryName("held"), true},
	} {
		if got := get(t, c, o.gvr, ns, o.name) != nil; got != o.want {
			t.Errorf("%s %s exists=%v after the releases were removed, want %v", o.gvr.Resource, o.name, got, o.want)
		}
	}
}

// TestPruneUndeclared: an object the inventory lists but the release no
// longer declares is deleted; one outside the inventory is left alone.
func TestPruneUndeclared(t *testing.T) {
	c := kubetest.Plain(t)
	ns := c.Namespace(t, "prune")
	d := newDriver(t, c, ns)
	ctx := context.Background()
	k := &fleet.Kubernetes{Image: "ghcr.io/example/runtime:1"}
	apply(t, d, "demo", desired("demo", d1, "r1", k))
	// An older layout left a Service demo-old, listed in the inventory, and
	// someone else's Service stray.
	for _, name := range []string{"demo-old", "stray"} {
		svc := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": name}, "spec": map[string]any{"ports": []any{map[string]any{"port": int64(80)}}}}}
		if _, err := c.Dyn.Resource(kubetest.Services).Namespace(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cm := get(t, c, kubetest.ConfigMaps, ns, kube.InventoryName("demo"))
	objs, _, _ := unstructured.NestedString(cm.Object, "data", "objects")
	objs = strings.TrimSuffix(objs, "]") + `,{"apiVersion":"v1","kind":"Service","name":"demo-old"}]`
	unstructured.SetNestedField(cm.Object, objs, "data", "objects")
	if _, err := c.Dyn.Resource(kubetest.ConfigMaps).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	apply(t, d, "demo", desired("demo", d1, "r1", k))
	if get(t, c, kubetest.Services, ns, "demo-old") != nil {
		t.Error("demo-old, no longer declared, was not pruned")
	}
	if get(t, c, kubetest.Services, ns, "stray") == nil || get(t, c, kubetest.Services, ns, "demo") == nil {
		t.Error("pruned a Service it does not own or still declares")
	}
	inv, _ := d.Inventories(ctx)
	if n := len(inv["demo"].Objects); n != 2 {
		t.Errorf("inventory lists %d objects after pruning, want 2", n)
	}
}

// TestNoImageWithoutKServe: a release without spec.kubernetes.image fails
// on a cluster without KServe, saying so.
func TestNoImageWithoutKServe(t *testing.T) {
	c := kubetest.Plain(t)
	d := newDriver(t, c, c.Namespace(t, "noimage"))
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", nil)), fleet.PhaseFailed, "", "spec.kubernetes.image is required")
}

// TestInferenceServicePath: with the InferenceService CRD installed, a
// release becomes an InferenceService whose storageUri is the artifact by
// digest; Ready decides health, Ready=False with a reason fails the digest
// and the previous storageUri is applied again; removal prunes it.
func TestInferenceServicePath(t *testing.T) {
	c := kubetest.KServe(t)
	ns := c.Namespace(t, "isvc")
	d := newDriver(t, c, ns)
	ctx := context.Background()
	f, err := d.Facts(ctx)
	if err != nil || !f.KServe {
		t.Fatalf("facts %+v, %v: want kserve", f, err)
	}
	replicas := 3
	k := &fleet.Kubernetes{ServingRuntime: "kserve-onnx", ModelFormat: "onnx", Replicas: &replicas,
		Limits: map[string]string{"nvidia.com/gpu": "1"}}
	storage := func() string {
		s := get(t, c, kubetest.ISVCs, ns, "demo")
		if s == nil {
			t.Fatal("no InferenceService demo")
		}
		managedByCairn(t, s, "demo")
		uri, _, _ := unstructured.NestedString(s.Object, "spec", "predictor", "model", "storageUri")
		return uri
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", k)), fleet.PhaseVerifying, "", "InferenceService/demo")
	if got := storage(); got != "oci://"+repo+"@"+d1 {
		t.Fatalf("storageUri %s", got)
	}
	s := get(t, c, kubetest.ISVCs, ns, "demo")
	pred, _, _ := unstructured.NestedMap(s.Object, "spec", "predictor")
	b, _ := json.Marshal(pred)
	for _, want := range []string{`"minReplicas":3`, `"runtime":"kserve-onnx"`, `"modelFormat":{"name":"onnx"}`, `"nvidia.com/gpu":"1"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("predictor lacks %s: %s", want, b)
		}
	}
	if get(t, c, kubetest.Deployments, ns, "demo") != nil {
		t.Error("a Deployment was applied on a cluster with KServe")
	}
	if err := kubetest.SetISVCStatus(ctx, c.Dyn, ns, "demo", ""); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", k)), fleet.PhaseHealthy, d1, "Ready")

	wantPhase(t, apply(t, d, "demo", desired("demo", d2, "r2", k)), fleet.PhaseVerifying, d1, "not observed")
	if err := kubetest.SetISVCStatus(ctx, c.Dyn, ns, "demo", "ModelLoadFailed"); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d2, "r2", k)), fleet.PhaseFailed, d1, "ModelLoadFailed", "model failed to load")
	if got := storage(); got != "oci://"+repo+"@"+d1 {
		t.Fatalf("after the failure storageUri is %s, want d1 again", got)
	}
	if err := kubetest.SetISVCStatus(ctx, c.Dyn, ns, "demo", ""); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r3", k)), fleet.PhaseRolledBack, d1)

	if _, err := d.Apply(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if get(t, c, kubetest.ISVCs, ns, "demo") != nil || get(t, c, kubetest.ConfigMaps, ns, kube.InventoryName("demo")) != nil {
		t.Error("removed release not pruned")
	}
}

// TestClusterFacts: nodes give the node count, architectures, the largest
// allocatable memory of a node, total CPUs and GPUs.
func TestClusterFacts(t *testing.T) {
	c := kubetest.KServe(t)
	ns := c.Namespace(t, "facts")
	c.Node(t, "facts-gpu-"+ns, "amd64", map[string]string{"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "4", "pods": "110"})
	c.Node(t, "facts-arm-"+ns, "arm64", map[string]string{"cpu": "3500m", "memory": "8Gi", "pods": "110"})
	f, err := newDriver(t, c, ns).Facts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("facts: %+v", f)
	// Other tests may register nodes on this server too: check at least ours.
	if f.Nodes < 2 || !slices.Contains(f.Architectures, "amd64") || !slices.Contains(f.Architectures, "arm64") ||
		f.Memory < 64<<30 || f.CPUs < 19 || f.GPUs["nvidia.com/gpu"] < 4 || !slices.Contains(f.Accelerators, "nvidia-gpu") ||
		f.OS != "linux" || !f.KServe {
		t.Fatalf("facts = %+v", f)
	}
	if f.Arch != "" && len(f.Architectures) > 1 {
		t.Errorf("arch %q set for mixed architectures %v", f.Arch, f.Architectures)
	}
	l := f.Labels()
	if l["kind"] != "cluster" || l["kserve"] != "true" || l["kubernetes.version"] != f.KubernetesVersion {
		t.Errorf("labels %v", l)
	}
}

// TestShippedRBAC: with only the permissions of examples/kube/rbac.yaml
// (impersonating its service account), the driver reads the facts, applies
// an InferenceService, reads its health and prunes it.
func TestShippedRBAC(t *testing.T) {
	c := kubetest.KServe(t)
	ns := c.Namespace(t, "rbac")
	ctx := context.Background()
	b, err := os.ReadFile("../../../examples/kube/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(strings.ReplaceAll(string(b), "ml-serving", ns), "\n---\n") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		gvr := map[string]schema.GroupVersionResource{
			"ServiceAccount": {Version: "v1", Resource: "serviceaccounts"},
			"Role":           kubetest.Roles, "RoleBinding": kubetest.RoleBindings,
			"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
			"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		}[u.GetKind()]
		var ri dynamic.ResourceInterface = c.Dyn.Resource(gvr)
		if u.GetNamespace() != "" {
			ri = c.Dyn.Resource(gvr).Namespace(u.GetNamespace())
		}
		if _, err := ri.Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "test", Force: true}); err != nil {
			t.Fatalf("apply %s/%s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	rc := rest.CopyConfig(c.Rest)
	rc.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":cairn-agent",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
	d, err := kube.New(kube.Config{Rest: rc, Namespace: ns, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC bindings take effect within a moment.
	var f fleet.Facts
	for i := 0; ; i++ {
		if f, err = d.Facts(ctx); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || !f.KServe {
		t.Fatalf("facts as the service account: %+v, %v", f, err)
	}
	k := &fleet.Kubernetes{ModelFormat: "onnx"}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", k)), fleet.PhaseVerifying, "")
	if err := kubetest.SetISVCStatus(ctx, c.Dyn, ns, "demo", ""); err != nil {
		t.Fatal(err)
	}
	wantPhase(t, apply(t, d, "demo", desired("demo", d1, "r1", k)), fleet.PhaseHealthy, d1)
	if _, err := d.Apply(ctx, nil); err != nil {
		t.Fatalf("prune as the service account: %v", err)
	}
	if get(t, c, kubetest.ISVCs, ns, "demo") != nil {
		t.Error("not pruned")
	}
	// Elsewhere it may do nothing.
	other := c.Namespace(t, "rbac-other")
	d2, _ := kube.New(kube.Config{Rest: rc, Namespace: other})
	if _, err := d2.Apply(ctx, []fleet.DesiredModel{desired("demo", d1, "r1", k)}); !apierrors.IsForbidden(errors.Unwrap(err)) && (err == nil || !strings.Contains(err.Error(), "forbidden")) {
		t.Errorf("applying in another namespace: %v, want forbidden", err)
	}
}
