package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cairn-dev/cairn/fleet"
)

// FieldManager is the server-side apply field manager of every object the
// driver applies.
const FieldManager = "cairn"

// Labels on every object the driver applies.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelRelease   = "cairn.dev/release"
	ManagedBy      = "cairn"
	// LabelInventory marks the inventory ConfigMaps.
	LabelInventory = "cairn.dev/inventory"
	// AnnotationDigest on applied objects is the model digest they serve.
	AnnotationDigest = "cairn.dev/digest"
)

// DefaultCairnImage runs `cairn model pull` in the Deployment's init container.
const DefaultCairnImage = "ghcr.io/cairn-dev/cairn:latest"

// Resources the driver reads and writes.
var (
	gvrNode       = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	gvrConfigMap  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrService    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrDeployment = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrISVC       = schema.GroupVersionResource{Group: "serving.kserve.io", Version: "v1beta1", Resource: "inferenceservices"}
	gvrCRD        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// ISVCCRDName is the name of KServe's InferenceService CRD.
const ISVCCRDName = "inferenceservices.serving.kserve.io"

// GPU resource names counted in the facts.
var gpuResources = []string{"nvidia.com/gpu", "amd.com/gpu"}

// Config configures a Driver.
type Config struct {
	// Rest is the connection to the API server (see RestConfig).
	Rest *rest.Config
	// Namespace is where every release's objects go.
	Namespace string
	// CairnImage runs `cairn model pull` in the Deployment's init container
	// (default DefaultCairnImage).
	CairnImage string
	// PlainHTTP passes --plain-http to the init container's pull.
	PlainHTTP bool
	Logf      func(format string, args ...any)
}

// Driver runs releases in one namespace of a cluster; it implements
// agent.Driver.
type Driver struct {
	cfg  Config
	dyn  dynamic.Interface
	disc discovery.DiscoveryInterface
}

// RestConfig loads the connection: the kubeconfig file when given (its
// current context), otherwise the in-cluster service account.
func RestConfig(kubeconfig string, inCluster bool) (*rest.Config, error) {
	switch {
	case kubeconfig != "" && inCluster:
		return nil, errors.New("kube: give either a kubeconfig or in-cluster, not both")
	case inCluster:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kube: in-cluster config: %w", err)
		}
		return c, nil
	case kubeconfig != "":
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("kube: load kubeconfig %s: %w", kubeconfig, err)
		}
		return c, nil
	}
	return nil, errors.New("kube: a kubeconfig file or in-cluster is required")
}

// New connects to the API server.
func New(cfg Config) (*Driver, error) {
	if cfg.Rest == nil {
		return nil, errors.New("kube: no API server connection")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kube: namespace is required")
	}
	if cfg.CairnImage == "" {
		cfg.CairnImage = DefaultCairnImage
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	rc := rest.CopyConfig(cfg.Rest)
	rc.UserAgent = "cairn-agent-kube"
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: client: %w", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kube: discovery client: %w", err)
	}
	return &Driver{cfg: cfg, dyn: dyn, disc: disc}, nil
}

// Facts observes the cluster: version, nodes (count, architectures,
// operating system), allocatable CPU, memory and GPUs, and KServe.
func (d *Driver) Facts(ctx context.Context) (fleet.Facts, error) {
	f := fleet.Facts{Kind: fleet.KindCluster}
	v, err := d.disc.ServerVersion()
	if err != nil {
		return f, fmt.Errorf("kube: read /version: %w", err)
	}
	f.KubernetesVersion = v.GitVersion
	nodes, err := d.dyn.Resource(gvrNode).List(ctx, metav1.ListOptions{})
	if err != nil {
		return f, fmt.Errorf("kube: list nodes: %w", err)
	}
	nodeFacts(&f, nodes.Items)
	if f.KServe, err = d.kserveInstalled(ctx); err != nil {
		return f, err
	}
	return f, nil
}

// nodeFacts fills the node-derived facts.
func nodeFacts(f *fleet.Facts, nodes []unstructured.Unstructured) {
	f.Nodes = len(nodes)
	var oses []string
	var milliCPU int64
	for _, n := range nodes {
		arch, _, _ := unstructured.NestedString(n.Object, "status", "nodeInfo", "architecture")
		if arch == "" {
			arch = n.GetLabels()["kubernetes.io/arch"]
		}
		if arch != "" && !slices.Contains(f.Architectures, arch) {
			f.Architectures = append(f.Architectures, arch)
		}
		osName, _, _ := unstructured.NestedString(n.Object, "status", "nodeInfo", "operatingSystem")
		if osName == "" {
			osName = n.GetLabels()["kubernetes.io/os"]
		}
		if osName != "" && !slices.Contains(oses, osName) {
			oses = append(oses, osName)
		}
		alloc, _, _ := unstructured.NestedStringMap(n.Object, "status", "allocatable")
		if q, err := resource.ParseQuantity(alloc["cpu"]); err == nil {
			milliCPU += q.MilliValue()
		}
		if q, err := resource.ParseQuantity(alloc["memory"]); err == nil {
			f.Memory = max(f.Memory, q.Value())
		}
		for _, g := range gpuResources {
			if q, err := resource.ParseQuantity(alloc[g]); err == nil && q.Value() > 0 {
				if f.GPUs == nil {
					f.GPUs = map[string]int64{}
				}
				f.GPUs[g] += q.Value()
			}
		}
	}
	slices.Sort(f.Architectures)
	if len(f.Architectures) == 1 {
		f.Arch = f.Architectures[0]
	}
	if len(oses) == 1 {
		f.OS = oses[0]
	}
	f.CPUs = int(milliCPU / 1000)
	if f.GPUs["nvidia.com/gpu"] > 0 {
		f.Accelerators = append(f.Accelerators, "nvidia-gpu")
	}
	if f.GPUs["amd.com/gpu"] > 0 {
		f.Accelerators = append(f.Accelerators, "amd-gpu")
	}
}

// kserveInstalled reports whether the InferenceService CRD exists: read
// from the CRD itself, or from discovery when CRDs may not be read.
func (d *Driver) kserveInstalled(ctx context.Context) (bool, error) {
	_, err := d.dyn.Resource(gvrCRD).Get(ctx, ISVCCRDName, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	case !apierrors.IsForbidden(err):
		return false, fmt.Errorf("kube: read CRD %s: %w", ISVCCRDName, err)
	}
	rl, err := d.disc.ServerResourcesForGroupVersion(gvrISVC.GroupVersion().String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kube: discover %s: %w", gvrISVC.GroupVersion(), err)
	}
	for _, r := range rl.APIResources {
		if r.Name == gvrISVC.Resource {
			return true, nil
		}
	}
	return false, nil
}
