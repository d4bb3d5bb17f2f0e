// Package kube is the agent driver that makes a Kubernetes namespace a
// fleet target (`cairn agent --driver kube`). It reports the cluster's facts
// (kind: cluster, the API server's version, node count and architectures,
// allocatable CPU, memory and GPUs, whether KServe is installed) and runs
// each release by server-side apply with field manager "cairn":
//
//   - where KServe's InferenceService CRD is installed, an InferenceService
//     named after the release whose spec.predictor.model.storageUri is
//     oci://<repo>@sha256:<digest>;
//   - otherwise a Deployment whose init container pulls the model by digest
//     with `cairn model pull` into an emptyDir that the runtime container
//     (the Release's spec.kubernetes.image) mounts, and a Service.
//
// Health comes from the workload's own status, kstatus style: the
// observed generation must be the current one, and Ready (InferenceService)
// or Available with every replica updated (Deployment, through
// sigs.k8s.io/cli-utils kstatus) is Healthy; Ready=False with a reason, or
// a progress deadline exceeded, is Failed with that reason; anything else is
// still progressing. A failed digest is replaced by the last healthy one in
// the applied spec, so the rollback lives in Git-derived state rather than
// in cluster revisions.
//
// Every release has an inventory ConfigMap (cairn-inventory-<release>)
// owned by the agent: the objects applied, the healthy and previous
// digests, the failed one and whether to prune. With it the driver deletes
// what a release no longer declares and everything of a release removed
// from the desired state, unless the release says prune: false.
//
// The package links client-go, so only cmd/cairn registers it: the device
// agent binary (cmd/cairn-agent) stays without it.
package kube
