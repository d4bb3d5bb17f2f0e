// Package kubetest helps tests drive the real kube-apiserver that
// scripts/services/kube.sh starts: namespaces, nodes, the minimal
// InferenceService CRD and, since no kubelet or controller runs there, the
// workload status controllers would write (through the /status subresource).
package kubetest

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/internal/testenv"
)

//go:embed inferenceservice-crd.yaml
var isvcCRD []byte

// Resources tests touch.
var (
	Nodes        = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	Namespaces   = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	ConfigMaps   = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	Services     = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	Deployments  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	ISVCs        = schema.GroupVersionResource{Group: "serving.kserve.io", Version: "v1beta1", Resource: "inferenceservices"}
	CRDs         = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	Roles        = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	RoleBindings = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
)

// Cluster is one test API server.
type Cluster struct {
	Kubeconfig string
	Rest       *rest.Config
	Dyn        dynamic.Interface
}

// Plain is the API server without KServe's CRD (testenv.Kube).
func Plain(t testing.TB) *Cluster { return load(t, testenv.Kube) }

// KServe is the API server with the minimal InferenceService CRD installed
// (testenv.KubeKServe).
func KServe(t testing.TB) *Cluster {
	c := load(t, testenv.KubeKServe)
	c.InstallISVCCRD(t)
	return c
}

func load(t testing.TB, env string) *Cluster {
	t.Helper()
	path := testenv.Require(t, env)
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &Cluster{Kubeconfig: path, Rest: rc, Dyn: dyn}
}

// Namespace creates a namespace named prefix-<random>. Namespaces are not
// deleted: no controller would finish it.
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	ns := obj("v1", "Namespace", name)
	if _, err := c.Dyn.Resource(Namespaces).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

func obj(apiVersion, kind, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetName(name)
	return u
}

// InstallISVCCRD applies the minimal InferenceService CRD and waits until
// it is established.
func (c *Cluster) InstallISVCCRD(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(isvcCRD, &u.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dyn.Resource(CRDs).Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "kubetest", Force: true}); err != nil {
		t.Fatalf("apply InferenceService CRD: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.Dyn.Resource(CRDs).Get(ctx, u.GetName(), metav1.GetOptions{})
		if err == nil && condition(got, "Established") == "True" {
			// The resource is served a moment after it is established.
			if _, err := c.Dyn.Resource(ISVCs).Namespace("default").List(ctx, metav1.ListOptions{}); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("InferenceService CRD not established after 30s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func condition(u *unstructured.Unstructured, typ string) string {
	cs, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// Node creates (or updates) a node with the architecture and allocatable
// resources given (cpu, memory, nvidia.com/gpu, …), as a kubelet would
// register it.
func (c *Cluster) Node(t testing.TB, name, arch string, allocatable map[string]string) {
	t.Helper()
	ctx := context.Background()
	n := obj("v1", "Node", name)
	n.SetLabels(map[string]string{"kubernetes.io/arch": arch, "kubernetes.io/os": "linux"})
	got, err := c.Dyn.Resource(Nodes).Create(ctx, n, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = c.Dyn.Resource(Nodes).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	t.Cleanup(func() { c.Dyn.Resource(Nodes).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	alloc := map[string]any{}
	for k, v := range allocatable {
		alloc[k] = v
	}
	got.Object["status"] = map[string]any{
		"allocatable": alloc, "capacity": alloc,
		"nodeInfo": map[string]any{"architecture": arch, "operatingSystem": "linux", "kubeletVersion": "v1.37.2",
			"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "", "containerRuntimeVersion": "", "kubeProxyVersion": ""},
	}
	if _, err := c.Dyn.Resource(Nodes).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("set node %s status: %v", name, err)
	}
}

// SetDeploymentStatus writes a Deployment's status for its current
// generation as the deployment controller would: available with every
// replica updated, or, when failReason is set, Progressing=False with that
// reason (ProgressDeadlineExceeded).
func SetDeploymentStatus(ctx context.Context, dyn dynamic.Interface, ns, name, failReason string) error {
	d, err := dyn.Resource(Deployments).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	replicas, found, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
	if !found {
		replicas = 1
	}
	now := time.Now().UTC().Format(time.RFC3339)
	st := map[string]any{"observedGeneration": d.GetGeneration(), "replicas": replicas, "updatedReplicas": replicas}
	if failReason == "" {
		st["readyReplicas"], st["availableReplicas"] = replicas, replicas
		st["conditions"] = []any{
			map[string]any{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
			map[string]any{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed.", "lastUpdateTime": now, "lastTransitionTime": now},
		}
	} else {
		st["unavailableReplicas"] = replicas
		st["conditions"] = []any{
			map[string]any{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability.", "lastUpdateTime": now, "lastTransitionTime": now},
			map[string]any{"type": "Progressing", "status": "False", "reason": failReason, "message": fmt.Sprintf("ReplicaSet %q has timed out progressing.", name), "lastUpdateTime": now, "lastTransitionTime": now},
		}
	}
	d.Object["status"] = st
	_, err = dyn.Resource(Deployments).Namespace(ns).UpdateStatus(ctx, d, metav1.UpdateOptions{})
	return err
}

// SetISVCStatus writes an InferenceService's status for its current
// generation as KServe would: Ready=True, or Ready=False with failReason
// and modelStatus.lastFailureInfo.
func SetISVCStatus(ctx context.Context, dyn dynamic.Interface, ns, name, failReason string) error {
	s, err := dyn.Resource(ISVCs).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	st := map[string]any{"observedGeneration": s.GetGeneration()}
	if failReason == "" {
		st["conditions"] = []any{map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": now}}
		st["modelStatus"] = map[string]any{"transitionStatus": "UpToDate"}
	} else {
		st["conditions"] = []any{map[string]any{"type": "Ready", "status": "False", "reason": failReason, "lastTransitionTime": now}}
		st["modelStatus"] = map[string]any{"transitionStatus": "BlockedByFailedLoad",
			"lastFailureInfo": map[string]any{"reason": failReason, "message": "model failed to load"}}
	}
	s.Object["status"] = st
	_, err = dyn.Resource(ISVCs).Namespace(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	return err
}
