package reconciler

import (
	"github.com/fluxcd/pkg/runtime/conditions"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/cairn-dev/cairn/fleet"
)

// Condition types and reasons, as Flux uses them (kstatus).
const (
	TypeReady       = "Ready"
	TypeReconciling = "Reconciling"
	TypeStalled     = "Stalled"

	ReasonSucceeded        = "Succeeded"
	ReasonProgressing      = "Progressing"
	ReasonFetchFailed      = "GitOperationFailed"
	ReasonValidationFailed = "ValidationFailed"
	ReasonPolicyFailed     = "PolicyCompileFailed"
	ReasonPolicyDenied     = "PolicyDenied"
	// ReasonArtifactMissing: the registry (or dataset store) answered that
	// the model artifact (or a dataset) is not there: held, not retried
	// sooner than the interval.
	ReasonArtifactMissing = "ArtifactMissing"
	// ReasonArtifactUnavailable: the registry or dataset store could not be
	// asked (down, timed out): a retry, the admitted release kept.
	ReasonArtifactUnavailable = "ArtifactUnavailable"
	ReasonPaused              = "Paused"
	ReasonAborted             = "Aborted"
	ReasonRolledBack          = "RolledBack"
	ReasonSuspended           = "Suspended"
	ReasonFailed              = "ReconcileFailed"
)

// Status is a minimal Kubernetes-like object carrying conditions, so that
// fluxcd/pkg/runtime/conditions can set them with Flux's semantics.
type Status struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	Conditions []metav1.Condition
}

var _ conditions.Setter = (*Status)(nil)

// GetConditions returns the conditions.
func (s *Status) GetConditions() []metav1.Condition { return s.Conditions }

// SetConditions replaces the conditions.
func (s *Status) SetConditions(c []metav1.Condition) { s.Conditions = c }

// DeepCopyObject copies the status.
func (s *Status) DeepCopyObject() runtime.Object {
	c := &Status{TypeMeta: s.TypeMeta}
	s.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	for _, x := range s.Conditions {
		c.Conditions = append(c.Conditions, *x.DeepCopy())
	}
	return c
}

// Wire returns the conditions in their status API form.
func (s *Status) Wire() []fleet.Condition {
	out := make([]fleet.Condition, 0, len(s.Conditions))
	for _, c := range s.Conditions {
		out = append(out, fleet.Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: c.LastTransitionTime.Time})
	}
	return out
}

// FromWire rebuilds a Status from status API conditions.
func FromWire(cs []fleet.Condition) *Status {
	s := &Status{}
	for _, c := range cs {
		s.Conditions = append(s.Conditions, metav1.Condition{Type: c.Type, Status: metav1.ConditionStatus(c.Status), Reason: c.Reason, Message: c.Message, LastTransitionTime: metav1.NewTime(c.LastTransitionTime)})
	}
	return s
}

// markReady sets Ready=True and clears Reconciling and Stalled.
func markReady(s *Status, reason, format string, args ...any) {
	conditions.MarkTrue(s, TypeReady, reason, format, args...)
	conditions.Delete(s, TypeReconciling)
	conditions.Delete(s, TypeStalled)
}

// markReconciling sets Reconciling=True and Ready=Unknown.
func markReconciling(s *Status, reason, format string, args ...any) {
	conditions.MarkTrue(s, TypeReconciling, reason, format, args...)
	conditions.MarkUnknown(s, TypeReady, reason, format, args...)
	conditions.Delete(s, TypeStalled)
}

// markFailed sets Ready=False with the reason, and Stalled=True when
// retrying will not help without a new commit or an operator.
func markFailed(s *Status, stalled bool, reason, format string, args ...any) {
	conditions.MarkFalse(s, TypeReady, reason, format, args...)
	conditions.Delete(s, TypeReconciling)
	if stalled {
		conditions.MarkTrue(s, TypeStalled, reason, format, args...)
	} else {
		conditions.Delete(s, TypeStalled)
	}
}
