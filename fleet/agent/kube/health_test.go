package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestWorkloadHealth(t *testing.T) {
	tests := []struct {
		name, obj string
		want      State
		msg       string
	}{
		{"deployment available", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2},
  status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2,
    conditions: [{type: Available, status: "True"}, {type: Progressing, status: "True", reason: NewReplicaSetAvailable}]}}`, Healthy, "available"},
		{"deployment old generation", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 3}, spec: {replicas: 2},
  status: {observedGeneration: 2, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2}}`, Progressing, "observed generation"},
		{"deployment rolling", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 2},
  status: {observedGeneration: 2, replicas: 3, updatedReplicas: 1, readyReplicas: 2, availableReplicas: 2,
    conditions: [{type: Progressing, status: "True", reason: ReplicaSetUpdated}]}}`, Progressing, "Updated"},
		{"deployment deadline", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 2}, spec: {replicas: 1},
  status: {observedGeneration: 2, replicas: 1, updatedReplicas: 1, unavailableReplicas: 1,
    conditions: [{type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: timed out}]}}`, Failed, "ProgressDeadlineExceeded: timed out"},
		{"deployment no status", `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d, generation: 1}, spec: {replicas: 1}}`, Progressing, "Deployment/d"},
		{"isvc ready", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 4},
  status: {observedGeneration: 4, conditions: [{type: Ready, status: "True"}]}}`, Healthy, "Ready"},
		{"isvc not observed", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 5},
  status: {observedGeneration: 4, conditions: [{type: Ready, status: "True"}]}}`, Progressing, "generation 5 not observed"},
		{"isvc unknown", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 1},
  status: {observedGeneration: 1, conditions: [{type: Ready, status: Unknown}]}}`, Progressing, "not Ready"},
		{"isvc failed reason", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 1},
  status: {observedGeneration: 1, conditions: [{type: Ready, status: "False", reason: RevisionFailed, message: crash}]}}`, Failed, "RevisionFailed: crash"},
		{"isvc last failure", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 1},
  status: {observedGeneration: 1, conditions: [{type: Ready, status: "False"}],
    modelStatus: {lastFailureInfo: {reason: ModelLoadFailed, message: bad onnx}}}}`, Failed, "ModelLoadFailed: bad onnx"},
		{"isvc false without reason", `{apiVersion: serving.kserve.io/v1beta1, kind: InferenceService, metadata: {name: s, generation: 1},
  status: {observedGeneration: 1, conditions: [{type: Ready, status: "False"}]}}`, Progressing, "Ready=False"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// As client-go decodes what the API server answers (integers as int64).
			js, err := yaml.YAMLToJSON([]byte(tt.obj))
			if err != nil {
				t.Fatal(err)
			}
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatal(err)
			}
			h := WorkloadHealth(&u)
			if h.State != tt.want || !strings.Contains(h.Message, tt.msg) {
				t.Errorf("WorkloadHealth = %s %q, want %s containing %q", h.State, h.Message, tt.want, tt.msg)
			}
		})
	}
}

// FuzzDecodeInventory: an inventory ConfigMap is read from the cluster,
// where anyone with access may have edited it: decoding never panics and
// names only what it was given.
func FuzzDecodeInventory(f *testing.F) {
	f.Add("demo", `[{"apiVersion":"apps/v1","kind":"Deployment","name":"demo"}]`, "false")
	f.Add("", `[`, "")
	f.Add("x", `{"a":1}`, "true")
	f.Fuzz(func(t *testing.T, rel, objects, prune string) {
		cm := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "cm"},
			"data": map[string]any{"release": rel, "objects": objects, "prune": prune}}}
		inv, err := decodeInventory(cm)
		if err != nil {
			return
		}
		if inv.Release != rel || inv.Prune != (prune != "false") {
			t.Fatalf("decoded %+v from release %q prune %q", inv, rel, prune)
		}
	})
}
