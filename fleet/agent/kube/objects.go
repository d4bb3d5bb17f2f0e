package kube

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cairn-dev/cairn/fleet"
)

// Defaults of a release's spec.kubernetes.
const (
	DefaultPort        = 8080
	DefaultModelFormat = "onnx"
	// ModelMount is where the Deployment's pod has the model: the init
	// container pulls into ModelMount/model.
	ModelMount = "/models"
)

// errNoImage: a Deployment needs the runtime image.
var errNoImage = errors.New("spec.kubernetes.image is required on clusters without KServe (no InferenceService CRD)")

// objects builds what a release is on this cluster, serving the model
// artifact (repo@digest): an InferenceService when KServe is installed,
// otherwise a Deployment and a Service. The first object is the workload
// whose status is the release's health.
func (d *Driver) objects(dm fleet.DesiredModel, artifact string, kserve bool) ([]*unstructured.Unstructured, error) {
	k := dm.Kubernetes
	if k == nil {
		k = &fleet.Kubernetes{}
	}
	repo, digest, ok := strings.Cut(artifact, "@")
	if !ok || !strings.HasPrefix(digest, "sha256:") {
		return nil, fmt.Errorf("artifact %q is not pinned by digest", artifact)
	}
	port := k.Port
	if port == 0 {
		port = DefaultPort
	}
	replicas := int64(1)
	if k.Replicas != nil {
		replicas = int64(*k.Replicas)
	}
	if kserve {
		return []*unstructured.Unstructured{d.inferenceService(dm.Release, k, repo, digest, replicas)}, nil
	}
	if k.Image == "" {
		return nil, errNoImage
	}
	return []*unstructured.Unstructured{
		d.deployment(dm, k, artifact, digest, replicas, port),
		d.service(dm.Release, port),
	}, nil
}

// meta is the metadata every applied object carries.
func (d *Driver) meta(kind, apiVersion, name, digest string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetName(name)
	u.SetNamespace(d.cfg.Namespace)
	u.SetLabels(map[string]string{LabelManagedBy: ManagedBy, LabelRelease: name})
	if digest != "" {
		u.SetAnnotations(map[string]string{AnnotationDigest: digest})
	}
	return u
}

func (d *Driver) inferenceService(rel string, k *fleet.Kubernetes, repo, digest string, replicas int64) *unstructured.Unstructured {
	u := d.meta("InferenceService", "serving.kserve.io/v1beta1", rel, digest)
	format := k.ModelFormat
	if format == "" {
		format = DefaultModelFormat
	}
	model := map[string]any{
		"modelFormat": map[string]any{"name": format},
		// KServe's modelcar path: the OCI artifact itself, by digest.
		"storageUri": "oci://" + repo + "@" + digest,
	}
	if k.ServingRuntime != "" {
		model["runtime"] = k.ServingRuntime
	}
	if k.Image != "" {
		model["image"] = k.Image
	}
	if env := envList(k.Env); len(env) > 0 {
		model["env"] = env
	}
	if res := resources(k); len(res) > 0 {
		model["resources"] = res
	}
	u.Object["spec"] = map[string]any{"predictor": map[string]any{"minReplicas": replicas, "model": model}}
	return u
}

func (d *Driver) deployment(dm fleet.DesiredModel, k *fleet.Kubernetes, artifact, digest string, replicas int64, port int) *unstructured.Unstructured {
	rel := dm.Release
	u := d.meta("Deployment", "apps/v1", rel, digest)
	pull := []any{"cairn", "model", "pull", artifact, "-o", ModelMount + "/model"}
	if dm.PlainHTTP || d.cfg.PlainHTTP {
		pull = append(pull, "--plain-http")
	}
	env := append(envList(k.Env), map[string]any{"name": "CAIRN_MODEL_DIR", "value": ModelMount + "/model"})
	runtime := map[string]any{
		"name":         "runtime",
		"image":        k.Image,
		"env":          env,
		"ports":        []any{map[string]any{"name": "http", "containerPort": int64(port)}},
		"volumeMounts": []any{map[string]any{"name": "model", "mountPath": ModelMount, "readOnly": true}},
	}
	if res := resources(k); len(res) > 0 {
		runtime["resources"] = res
	}
	podLabels := map[string]any{LabelManagedBy: ManagedBy, LabelRelease: rel}
	u.Object["spec"] = map[string]any{
		"replicas": replicas,
		"selector": map[string]any{"matchLabels": map[string]any{LabelRelease: rel}},
		"template": map[string]any{
			"metadata": map[string]any{"labels": podLabels, "annotations": map[string]any{AnnotationDigest: digest}},
			"spec": map[string]any{
				"volumes": []any{map[string]any{"name": "model", "emptyDir": map[string]any{}}},
				"initContainers": []any{map[string]any{
					"name":         "model-pull",
					"image":        d.cfg.CairnImage,
					"command":      pull,
					"volumeMounts": []any{map[string]any{"name": "model", "mountPath": ModelMount}},
				}},
				"containers": []any{runtime},
			},
		},
	}
	return u
}

func (d *Driver) service(rel string, port int) *unstructured.Unstructured {
	u := d.meta("Service", "v1", rel, "")
	u.Object["spec"] = map[string]any{
		"selector": map[string]any{LabelRelease: rel},
		"ports": []any{map[string]any{"name": "http", "port": int64(port), "targetPort": int64(port),
			"protocol": "TCP"}},
	}
	return u
}

func envList(env []fleet.EnvVar) []any {
	out := make([]any, 0, len(env))
	for _, e := range env {
		out = append(out, map[string]any{"name": e.Name, "value": e.Value})
	}
	return out
}

func resources(k *fleet.Kubernetes) map[string]any {
	res := map[string]any{}
	conv := func(m map[string]string) map[string]any {
		out := map[string]any{}
		for _, n := range slices.Sorted(maps.Keys(m)) {
			out[n] = m[n]
		}
		return out
	}
	if len(k.Requests) > 0 {
		res["requests"] = conv(k.Requests)
	}
	if len(k.Limits) > 0 {
		res["limits"] = conv(k.Limits)
	}
	return res
}
