package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent/kube"
	"github.com/cairn-dev/cairn/internal/kubetest"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/rollout"
)

const clusterHead = `apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: prod}
spec:
  selector:
    matchLabels: {env: prod}
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: waves}
spec:
  waves: [{percent: 20, bake: 1s}, {percent: 60, bake: 1s}, {percent: 100, bake: 1s}]
  onFailure: rollback
`

// clusterSpec is what the Release of the cluster test adds to demoRelease.
const clusterSpec = `  rolloutPolicy: waves
  kubernetes:
    image: ghcr.io/example/onnx-runtime:1.20
    modelFormat: onnx
    replicas: 2
    port: 8080
    resources:
      requests: {cpu: 250m, memory: 256Mi}
`

// kubeController plays the controllers the test API servers lack: it
// writes the status of every Deployment and InferenceService the agents
// applied for the generation it has not observed yet, healthy unless the
// object serves the digest failing in the namespace failNS.
type kubeController struct {
	mu             sync.Mutex
	failNS, failOn string
}

func (kc *kubeController) fail(ns, digest string) {
	kc.mu.Lock()
	kc.failNS, kc.failOn = ns, digest
	kc.mu.Unlock()
}

func (kc *kubeController) run(ctx context.Context, t *testing.T, dyn dynamic.Interface, ns string, isvc bool) {
	gvr := kubetest.Deployments
	set := kubetest.SetDeploymentStatus
	if isvc {
		gvr, set = kubetest.ISVCs, kubetest.SetISVCStatus
	}
	for ctx.Err() == nil {
		l, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=cairn"})
		if err == nil {
			for _, o := range l.Items {
				og, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
				if og == o.GetGeneration() {
					continue
				}
				kc.mu.Lock()
				reason := ""
				if ns == kc.failNS && o.GetAnnotations()[kube.AnnotationDigest] == kc.failOn {
					reason = "ProgressDeadlineExceeded"
					if isvc {
						reason = "ModelLoadFailed"
					}
				}
				kc.mu.Unlock()
				if err := set(ctx, dyn, ns, o.GetName(), reason); err != nil && ctx.Err() == nil {
					t.Logf("  controller: status of %s/%s: %v", ns, o.GetName(), err)
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// TestClusterRolloutEndToEnd: one cairn serve, two device agents and three
// kube agents (two namespaces of a cluster without KServe, one of a cluster
// with KServe's CRD). One Release over a profile selecting devices and
// clusters rolls out v1 in waves across both kinds; v2's workload turns
// Ready=False on one cluster, whose wave fails, and every target, device or
// cluster, goes back to v1 (the clusters' specs name v1's digest again);
// `cairn get targets` shows the clusters with their facts; removing the
// Release prunes the cluster objects.
func TestClusterRolloutEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server and five agents")
	}
	plain, kserve := kubetest.Plain(t), kubetest.KServe(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newServer(t, serveOptions{manifests: clusterHead, config: map[string]string{"offlineAfter": "10s"}})
	work := s.work
	view := s.view()
	commit := s.commit

	push := func(version string, files map[string][]byte) string {
		t.Helper()
		paths := writeFiles(t, filepath.Join(work, "model-"+version), files)
		return s.push("models/demo:"+version, paths, "--name", "demo", "--version", version)
	}
	// v2 is healthy on devices; on one cluster its workload fails.
	v1 := push("1", map[string][]byte{"model.onnx": []byte("weights v1"), "ok": nil})
	v2 := push("2", map[string][]byte{"model.onnx": []byte("weights v2"), "ok": nil})
	d1, d2 := digestOf(v1), digestOf(v2)

	// A node on the plain cluster, as a kubelet would register it.
	b := make([]byte, 3)
	rand.Read(b)
	plain.Node(t, "e2e-gpu-"+hex.EncodeToString(b), "amd64", map[string]string{"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "2", "pods": "110"})

	type clusterAgent struct {
		name, ns string
		c        *kubetest.Cluster
		isvc     bool
	}
	clusters := []*clusterAgent{
		{name: "cluster-a", c: plain}, {name: "cluster-b", c: plain}, {name: "cluster-c", c: kserve, isvc: true},
	}
	kc := &kubeController{}
	for _, ca := range clusters {
		ca.ns = ca.c.Namespace(t, "e2e-"+ca.name)
		go kc.run(ctx, t, ca.c.Dyn, ca.ns, ca.isvc)
		// The kube driver is in cairn, not in the device binary.
		s.start(ca.name, s.bin, append([]string{"agent", "--driver", "kube", "--kubeconfig", ca.c.Kubeconfig, "--namespace", ca.ns},
			s.agentArgs(ca.name, "--labels", "env=prod,site="+ca.name)...)...)
	}
	for i := range 2 {
		s.agent(fmt.Sprintf("dev-%d", i), "--labels", "env=prod")
	}
	ids := map[string]string{}
	eventually(t, 60*time.Second, "5 targets to enroll", func() (bool, string) {
		ts := view.targets(t)
		for _, ti := range ts {
			ids[ti.ID] = ti.Name
		}
		return len(ts) == 5, fmt.Sprintf("%d enrolled", len(ts))
	})
	var all []string
	for id := range ids {
		all = append(all, id)
	}
	slices.Sort(all)
	wv := rollout.AssignWaves("demo", []manifests.Wave{{Percent: 20}, {Percent: 60}, {Percent: 100}}, all)
	for i, w := range wv {
		var ns []string
		for _, id := range w {
			ns = append(ns, ids[id])
		}
		t.Logf("wave %d: %v", i+1, ns)
	}

	onDigest := func(d string) func() (bool, string) {
		return func() (bool, string) {
			var on, off []string
			for _, ti := range view.targets(t) {
				s := releaseStatus(ti, "demo")
				if s.Digest == d && (s.Phase == fleet.PhaseHealthy || s.Phase == fleet.PhaseRolledBack) {
					on = append(on, ti.Name)
				} else {
					off = append(off, fmt.Sprintf("%s=%s/%s", ti.Name, s.Phase, short(s.Digest)))
				}
			}
			slices.Sort(on)
			return len(on) == 5, fmt.Sprintf("on %s: %v; others %v", short(d), on, off)
		}
	}
	phase := func(want string) func() (bool, string) {
		return func() (bool, string) {
			r := view.release(t, "demo")
			if r == nil {
				return false, "release not known yet"
			}
			return r.Phase == want, fmt.Sprintf("%s wave %d %s: %s", r.Phase, r.Wave+1, r.Reason, r.Message)
		}
	}
	// served is the digest each cluster's workload spec names now.
	served := func(ca *clusterAgent) string {
		if ca.isvc {
			s, err := ca.c.Dyn.Resource(kubetest.ISVCs).Namespace(ca.ns).Get(ctx, "demo", metav1.GetOptions{})
			if err != nil {
				return "none"
			}
			uri, _, _ := unstructured.NestedString(s.Object, "spec", "predictor", "model", "storageUri")
			return digestOf(uri)
		}
		d, err := ca.c.Dyn.Resource(kubetest.Deployments).Namespace(ca.ns).Get(ctx, "demo", metav1.GetOptions{})
		if err != nil {
			return "none"
		}
		ics, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "initContainers")
		cmd, _, _ := unstructured.NestedStringSlice(ics[0].(map[string]any), "command")
		return digestOf(cmd[3])
	}

	// 1. v1 rolls out in waves over devices and clusters.
	t.Log("STEP 1: release v1 to a profile selecting two devices and three clusters")
	commit("release demo v1", clusterHead+demoRelease("1", v1, "prod", clusterSpec))
	eventually(t, 120*time.Second, "v1 healthy on all five targets", onDigest(d1))
	eventually(t, 30*time.Second, "release Succeeded on v1", phase("Succeeded"))
	logWaveEvents(t, view, ids)
	for _, ca := range clusters {
		if got := served(ca); got != d1 {
			t.Fatalf("%s serves %s, want v1 %s", ca.name, short(got), short(d1))
		}
	}
	isvc, _ := kserve.Dyn.Resource(kubetest.ISVCs).Namespace(clusters[2].ns).Get(ctx, "demo", metav1.GetOptions{})
	uri, _, _ := unstructured.NestedString(isvc.Object, "spec", "predictor", "model", "storageUri")
	t.Logf("cluster-c (KServe) InferenceService demo storageUri %s", uri)
	if uri != "oci://"+v1 {
		t.Fatalf("storageUri %s, want oci://%s", uri, v1)
	}

	// 2. What operators see.
	out := s.api("get", "targets")
	t.Logf("cairn get targets:\n%s", out)
	js := s.api("get", "targets", "-o", "json")
	var listed []fleet.TargetInfo
	if err := json.Unmarshal([]byte(js), &listed); err != nil {
		t.Fatal(err)
	}
	nClusters := 0
	for _, ti := range listed {
		if ti.Facts.Kind != fleet.KindCluster {
			continue
		}
		nClusters++
		f := ti.Facts
		t.Logf("  %s: kind=%s kubernetesVersion=%s nodes=%d architectures=%v memory=%dGi gpus=%v kserve=%v",
			ti.Name, f.Kind, f.KubernetesVersion, f.Nodes, f.Architectures, f.Memory>>30, f.GPUs, f.KServe)
		if !strings.HasPrefix(f.KubernetesVersion, "v1.") || f.KServe != (ti.Name == "cluster-c") {
			t.Errorf("%s facts %+v", ti.Name, f)
		}
		if ti.Name != "cluster-c" && (f.Nodes < 1 || f.GPUs["nvidia.com/gpu"] < 2) {
			t.Errorf("%s: nodes %d gpus %v, want the registered GPU node", ti.Name, f.Nodes, f.GPUs)
		}
	}
	if nClusters != 3 || !strings.Contains(out, "cluster") {
		t.Fatalf("cairn get targets shows %d clusters", nClusters)
	}
	describe := s.api("describe", "target", "cluster-a")
	if !strings.Contains(describe, "kubernetes v1.") {
		t.Errorf("describe target cluster-a does not show the cluster facts:\n%s", describe)
	}

	// 3. v2: the workload of the cluster in the latest wave holding one turns
	// Ready=False; that wave fails and every target goes back to v1.
	var failing *clusterAgent
	for _, w := range wv {
		for _, id := range w {
			for _, ca := range clusters {
				if ids[id] == ca.name {
					failing = ca
				}
			}
		}
	}
	kc.fail(failing.ns, d2)
	t.Logf("STEP 2: release v2, whose workload turns Ready=False on %s", failing.name)
	commit("release demo v2", clusterHead+demoRelease("2", v2, "prod", clusterSpec))
	eventually(t, 120*time.Second, "release RolledBack", phase("RolledBack"))
	r := view.release(t, "demo")
	t.Logf("release demo: %s, reason %s: %s", r.Phase, r.Reason, r.Message)
	eventually(t, 120*time.Second, "every target back on v1", onDigest(d1))
	for _, ca := range clusters {
		if got := served(ca); got != d1 {
			t.Errorf("%s serves %s after the rollback, want v1", ca.name, short(got))
		}
	}
	for _, ti := range view.targets(t) {
		s := releaseStatus(ti, "demo")
		t.Logf("  %s: %s on %s (previous %s): %s", ti.Name, s.Phase, short(s.Digest), short(s.Previous), s.Message)
		// The first wave ran v2 healthily before the rollback.
		if slices.Contains(wv[0], ti.ID) && s.Phase != fleet.PhaseRolledBack {
			t.Errorf("%s (wave 1) is %s, want RolledBack", ti.Name, s.Phase)
		}
		if ti.Facts.Kind == fleet.KindCluster && len(ti.Metrics) > 0 {
			t.Errorf("%s reports the agent host's metrics %v as the cluster's", ti.Name, metricNames(ti.Metrics))
		}
	}
	failedSt := fleet.ReleaseStatus{}
	for _, ti := range view.targets(t) {
		if ti.Name == failing.name {
			failedSt = releaseStatus(ti, "demo")
		}
	}
	if !strings.Contains(failedSt.Message, "failed") {
		t.Errorf("%s reports %q, want the failure of v2", failing.name, failedSt.Message)
	}

	// 4. The release is removed from Git: the clusters prune its objects.
	t.Log("STEP 3: remove the Release; the clusters prune its objects")
	commit("remove release demo", clusterHead)
	eventually(t, 60*time.Second, "cluster objects pruned", func() (bool, string) {
		var left []string
		for _, ca := range clusters {
			objs := []struct {
				gvr  schema.GroupVersionResource
				name string
			}{{kubetest.Deployments, "demo"}, {kubetest.Services, "demo"}, {kubetest.ConfigMaps, kube.InventoryName("demo")}}
			if ca.isvc {
				objs = append(objs, struct {
					gvr  schema.GroupVersionResource
					name string
				}{kubetest.ISVCs, "demo"})
			}
			for _, o := range objs {
				if _, err := ca.c.Dyn.Resource(o.gvr).Namespace(ca.ns).Get(ctx, o.name, metav1.GetOptions{}); err == nil {
					left = append(left, ca.name+":"+o.gvr.Resource+"/"+o.name)
				}
			}
		}
		return len(left) == 0, fmt.Sprintf("left %v", left)
	})
}
