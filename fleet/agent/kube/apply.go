package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/manifests"
)

// ObjectRef names one applied object in an inventory.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
}

func (r ObjectRef) String() string { return r.Kind + "/" + r.Name }

// Inventory is what the driver knows about one release, kept in the
// ConfigMap cairn-inventory-<release> of the namespace.
type Inventory struct {
	Release string
	Objects []ObjectRef
	// Applied is the artifact (repo@digest) in the objects' spec now.
	Applied string
	// Current is the artifact last seen healthy, Previous the one before.
	Current, Previous string
	// Failed is the digest that failed in rollout FailedRollout.
	Failed, FailedRollout, FailedMessage string
	// RolledBackFrom is the digest Current replaced when the server sent
	// the previous one back.
	RolledBackFrom string
	Prune          bool
}

// InventoryName is the ConfigMap of a release's inventory.
func InventoryName(release string) string { return "cairn-inventory-" + release }

func digestOf(artifact string) string {
	_, d, _ := strings.Cut(artifact, "@")
	return d
}

var kindResource = map[string]schema.GroupVersionResource{
	"Deployment":       gvrDeployment,
	"Service":          gvrService,
	"InferenceService": gvrISVC,
}

func (d *Driver) resource(r ObjectRef) (dynamic.ResourceInterface, error) {
	gvr, ok := kindResource[r.Kind]
	if !ok {
		return nil, fmt.Errorf("inventory names %s, a kind the driver does not apply", r)
	}
	return d.dyn.Resource(gvr).Namespace(d.cfg.Namespace), nil
}

// Apply implements agent.Driver: each release of models is applied and its
// health read; inventories of releases not in models are pruned.
func (d *Driver) Apply(ctx context.Context, models []fleet.DesiredModel) ([]fleet.ReleaseStatus, error) {
	return d.ApplyKeeping(ctx, models, nil)
}

// ApplyKeeping implements agent.KeepingDriver: Apply, except that the
// releases named in keep (the desired state's keep list) are left as they
// are, objects and inventory, although models does not list them.
func (d *Driver) ApplyKeeping(ctx context.Context, models []fleet.DesiredModel, keep []string) ([]fleet.ReleaseStatus, error) {
	invs, err := d.Inventories(ctx)
	if err != nil {
		return nil, err
	}
	kserve, err := d.kserveInstalled(ctx)
	if err != nil {
		return nil, err
	}
	models = slices.Clone(models)
	slices.SortFunc(models, func(a, b fleet.DesiredModel) int { return strings.Compare(a.Release, b.Release) })
	var sts []fleet.ReleaseStatus
	var errs []error
	want := map[string]bool{}
	for _, dm := range models {
		want[dm.Release] = true
		inv := invs[dm.Release]
		if inv == nil {
			inv = &Inventory{Release: dm.Release, Prune: true}
		}
		st, err := d.release(ctx, dm, inv, kserve)
		if err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", dm.Release, err))
		}
		sts = append(sts, st)
	}
	for _, rel := range slices.Sorted(maps.Keys(invs)) {
		if !want[rel] && !slices.Contains(keep, rel) {
			if err := d.remove(ctx, invs[rel]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return sts, errors.Join(errs...)
}

// release applies one release and reports its status.
func (d *Driver) release(ctx context.Context, dm fleet.DesiredModel, inv *Inventory, kserve bool) (fleet.ReleaseStatus, error) {
	st := fleet.ReleaseStatus{Release: dm.Release, Desired: dm.Digest,
		Digest: digestOf(inv.Current), Previous: digestOf(inv.Previous)}
	if err := manifests.CheckDigest(dm.Digest); err != nil {
		st.Phase, st.Message = fleet.PhaseFailed, fmt.Sprintf("desired model %q: %v", dm.Artifact, err)
		return st, nil
	}
	if digestOf(dm.Artifact) != dm.Digest {
		st.Phase, st.Message = fleet.PhaseFailed, fmt.Sprintf("artifact %q is not pinned to %s", dm.Artifact, dm.Digest)
		return st, nil
	}
	inv.Prune = dm.Kubernetes == nil || dm.Kubernetes.Prune == nil || *dm.Kubernetes.Prune
	// Failed in this rollout: stay on the healthy digest until a new rollout.
	if inv.Failed == dm.Digest && inv.FailedRollout == dm.Rollout {
		if inv.Current != "" && inv.Applied != inv.Current {
			if _, err := d.applyObjects(ctx, dm, inv, inv.Current, kserve); err != nil {
				return st, err
			}
		}
		st.Phase, st.Message = fleet.PhaseFailed, inv.FailedMessage
		return st, nil
	}
	work, err := d.applyObjects(ctx, dm, inv, dm.Artifact, kserve)
	if errors.Is(err, errNoImage) {
		return d.fail(ctx, dm, inv, st, kserve, err.Error())
	}
	if err != nil {
		st.Phase, st.Message = fleet.PhaseFailed, err.Error()
		return st, err
	}
	h := WorkloadHealth(work)
	switch h.State {
	case Healthy:
		rolledBackFrom := ""
		switch {
		case inv.Current != dm.Artifact && inv.Previous == dm.Artifact && inv.Current != "":
			// The server sends the previous digest back: a rollback.
			inv.RolledBackFrom = digestOf(inv.Current)
			inv.Failed, inv.FailedRollout, inv.FailedMessage = "", "", ""
			rolledBackFrom = "the fleet rolled back from " + manifests.ShortDigest(inv.RolledBackFrom)
		case inv.Current == dm.Artifact && inv.Failed != "" && inv.Failed != dm.Digest:
			// The new digest failed here; back on the healthy one.
			rolledBackFrom = manifests.ShortDigest(inv.Failed) + " failed"
		case inv.Current == dm.Artifact && inv.RolledBackFrom != "":
			rolledBackFrom = "the fleet rolled back from " + manifests.ShortDigest(inv.RolledBackFrom)
		default:
			inv.Failed, inv.FailedRollout, inv.FailedMessage, inv.RolledBackFrom = "", "", "", ""
		}
		if inv.Current != dm.Artifact {
			inv.Previous, inv.Current = inv.Current, dm.Artifact
		}
		if err := d.saveInventory(ctx, inv); err != nil {
			return st, err
		}
		st.Digest, st.Previous = dm.Digest, digestOf(inv.Previous)
		if rolledBackFrom != "" {
			st.Phase, st.Message = fleet.PhaseRolledBack, fmt.Sprintf("back on %s after %s (%s)",
				manifests.ShortDigest(dm.Digest), rolledBackFrom, h.Message)
		} else {
			st.Phase, st.Message = fleet.PhaseHealthy, "running "+manifests.ShortDigest(dm.Digest)+" ("+h.Message+")"
		}
		return st, nil
	case Failed:
		return d.fail(ctx, dm, inv, st, kserve, h.Message)
	}
	st.Phase, st.Message = fleet.PhaseVerifying, "waiting for "+h.Message
	return st, nil
}

// fail records that dm's digest failed in its rollout and puts the last
// healthy artifact back in the applied spec.
func (d *Driver) fail(ctx context.Context, dm fleet.DesiredModel, inv *Inventory, st fleet.ReleaseStatus, kserve bool, why string) (fleet.ReleaseStatus, error) {
	inv.Failed, inv.FailedRollout = dm.Digest, dm.Rollout
	inv.FailedMessage = why
	if inv.Current != "" && inv.Current != dm.Artifact {
		if _, err := d.applyObjects(ctx, dm, inv, inv.Current, kserve); err != nil {
			inv.FailedMessage += "; re-applying " + manifests.ShortDigest(digestOf(inv.Current)) + " failed: " + err.Error()
		} else {
			inv.FailedMessage += "; switched back to " + manifests.ShortDigest(digestOf(inv.Current))
		}
	}
	if err := d.saveInventory(ctx, inv); err != nil {
		return st, err
	}
	d.cfg.Logf("kube: %s: %s failed: %s", dm.Release, manifests.ShortDigest(dm.Digest), inv.FailedMessage)
	st.Phase, st.Message = fleet.PhaseFailed, inv.FailedMessage
	return st, nil
}

// applyObjects applies the release's objects serving artifact, prunes
// those the inventory lists that are no longer declared and saves the
// inventory. It returns the workload as the API server answered.
func (d *Driver) applyObjects(ctx context.Context, dm fleet.DesiredModel, inv *Inventory, artifact string, kserve bool) (*unstructured.Unstructured, error) {
	objs, err := d.objects(dm, artifact, kserve)
	if err != nil {
		return nil, err
	}
	var refs []ObjectRef
	var work *unstructured.Unstructured
	for i, o := range objs {
		ref := ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Name: o.GetName()}
		refs = append(refs, ref)
		// Record the object before it exists, so a crash never leaves an
		// object the inventory does not know.
		if !slices.Contains(inv.Objects, ref) {
			inv.Objects = append(inv.Objects, ref)
			if err := d.saveInventory(ctx, inv); err != nil {
				return nil, err
			}
		}
		res, err := d.resource(ref)
		if err != nil {
			return nil, err
		}
		got, err := res.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return nil, fmt.Errorf("apply %s: %w", ref, err)
		}
		if i == 0 {
			work = got
		}
	}
	var kept []ObjectRef
	for _, r := range inv.Objects {
		if slices.Contains(refs, r) {
			kept = append(kept, r)
			continue
		}
		if !inv.Prune {
			d.cfg.Logf("kube: %s: %s is no longer declared; kept (prune: false)", dm.Release, r)
			continue
		}
		if err := d.deleteObject(ctx, r); err != nil {
			return nil, err
		}
		d.cfg.Logf("kube: %s: pruned %s", dm.Release, r)
	}
	inv.Objects, inv.Applied = kept, artifact
	if err := d.saveInventory(ctx, inv); err != nil {
		return nil, err
	}
	return work, nil
}

func (d *Driver) deleteObject(ctx context.Context, r ObjectRef) error {
	res, err := d.resource(r)
	if err != nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	if err := res.Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("prune %s: %w", r, err)
	}
	return nil
}

// remove deletes everything of a release no longer desired (unless its
// last spec said prune: false) and then its inventory.
func (d *Driver) remove(ctx context.Context, inv *Inventory) error {
	if inv.Prune {
		for _, r := range inv.Objects {
			if err := d.deleteObject(ctx, r); err != nil {
				return fmt.Errorf("release %s: %w", inv.Release, err)
			}
			d.cfg.Logf("kube: %s: release removed; pruned %s", inv.Release, r)
		}
	} else {
		d.cfg.Logf("kube: %s: release removed; keeping %d objects (prune: false)", inv.Release, len(inv.Objects))
	}
	err := d.dyn.Resource(gvrConfigMap).Namespace(d.cfg.Namespace).Delete(ctx, InventoryName(inv.Release), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release %s: delete inventory: %w", inv.Release, err)
	}
	return nil
}

// Inventories reads every release inventory of the namespace.
func (d *Driver) Inventories(ctx context.Context) (map[string]*Inventory, error) {
	l, err := d.dyn.Resource(gvrConfigMap).Namespace(d.cfg.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: LabelInventory + "=true," + LabelManagedBy + "=" + ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("kube: list inventories in %s: %w", d.cfg.Namespace, err)
	}
	out := map[string]*Inventory{}
	for _, cm := range l.Items {
		inv, err := decodeInventory(&cm)
		if err != nil {
			return nil, err
		}
		out[inv.Release] = inv
	}
	return out, nil
}

func decodeInventory(cm *unstructured.Unstructured) (*Inventory, error) {
	data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
	inv := &Inventory{Release: data["release"], Applied: data["applied"], Current: data["current"], Previous: data["previous"],
		Failed: data["failed"], FailedRollout: data["failedRollout"], FailedMessage: data["failedMessage"],
		RolledBackFrom: data["rolledBackFrom"], Prune: data["prune"] != "false"}
	if inv.Release == "" {
		return nil, fmt.Errorf("kube: inventory %s names no release", cm.GetName())
	}
	if s := data["objects"]; s != "" {
		if err := json.Unmarshal([]byte(s), &inv.Objects); err != nil {
			return nil, fmt.Errorf("kube: inventory %s: objects: %w", cm.GetName(), err)
		}
	}
	return inv, nil
}

func (d *Driver) saveInventory(ctx context.Context, inv *Inventory) error {
	objs, _ := json.Marshal(inv.Objects)
	if inv.Objects == nil {
		objs = []byte("[]")
	}
	cm := d.meta("ConfigMap", "v1", InventoryName(inv.Release), "")
	cm.SetLabels(map[string]string{LabelManagedBy: ManagedBy, LabelRelease: inv.Release, LabelInventory: "true"})
	cm.Object["data"] = map[string]any{
		"release": inv.Release, "objects": string(objs), "applied": inv.Applied,
		"current": inv.Current, "previous": inv.Previous,
		"failed": inv.Failed, "failedRollout": inv.FailedRollout, "failedMessage": inv.FailedMessage,
		"rolledBackFrom": inv.RolledBackFrom, "prune": strconv.FormatBool(inv.Prune),
	}
	_, err := d.dyn.Resource(gvrConfigMap).Namespace(d.cfg.Namespace).Apply(ctx, cm.GetName(), cm,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("kube: save inventory of %s: %w", inv.Release, err)
	}
	return nil
}
