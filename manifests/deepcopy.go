package manifests

import (
	"maps"
	"slices"
)

// The DeepCopy methods return a copy sharing no slice, map or pointer with
// the original, so what a Snapshot hands out cannot change it.

// DeepCopy returns a copy of the metadata sharing no map with it.
func (m ObjectMeta) DeepCopy() ObjectMeta {
	m.Labels = maps.Clone(m.Labels)
	m.Annotations = maps.Clone(m.Annotations)
	return m
}

// DeepCopy returns a copy of the dataset sharing nothing with it.
func (o Dataset) DeepCopy() Dataset {
	o.Metadata = o.Metadata.DeepCopy()
	return o
}

// DeepCopy returns a copy of the model sharing nothing with it.
func (o Model) DeepCopy() Model {
	o.Metadata = o.Metadata.DeepCopy()
	s := &o.Spec
	s.TrainedOn = slices.Clone(s.TrainedOn)
	s.EvaluatedOn = slices.Clone(s.EvaluatedOn)
	for i := range s.EvaluatedOn {
		s.EvaluatedOn[i].Metrics = maps.Clone(s.EvaluatedOn[i].Metrics)
	}
	s.Requires.Arch = slices.Clone(s.Requires.Arch)
	s.Requires.Accelerators = slices.Clone(s.Requires.Accelerators)
	s.Variants = slices.Clone(s.Variants)
	s.Evaluation = s.Evaluation.DeepCopy()
	return o
}

// DeepCopy returns a copy of the evaluation sharing nothing with it (nil
// for nil).
func (e *EvaluationSpec) DeepCopy() *EvaluationSpec {
	if e == nil {
		return nil
	}
	c := *e
	c.Command = slices.Clone(e.Command)
	if e.Metrics != nil {
		c.Metrics = make(map[string]EvaluationMetric, len(e.Metrics))
		for k, m := range e.Metrics {
			m.Min, m.Max, m.MaxDrop, m.MaxRelativeDrop = clonePtr(m.Min), clonePtr(m.Max), clonePtr(m.MaxDrop), clonePtr(m.MaxRelativeDrop)
			c.Metrics[k] = m
		}
	}
	return &c
}

// DeepCopy returns a copy of the selector sharing nothing with it.
func (s LabelSelector) DeepCopy() LabelSelector {
	s.MatchLabels = maps.Clone(s.MatchLabels)
	s.MatchExpressions = slices.Clone(s.MatchExpressions)
	for i := range s.MatchExpressions {
		s.MatchExpressions[i].Values = slices.Clone(s.MatchExpressions[i].Values)
	}
	return s
}

// DeepCopy returns a copy of the device profile sharing nothing with it.
func (o DeviceProfile) DeepCopy() DeviceProfile {
	o.Metadata = o.Metadata.DeepCopy()
	o.Spec.Selector = o.Spec.Selector.DeepCopy()
	return o
}

// DeepCopy returns a copy of the rollout policy sharing nothing with it.
func (o RolloutPolicy) DeepCopy() RolloutPolicy {
	o.Metadata = o.Metadata.DeepCopy()
	s := &o.Spec
	s.Waves = slices.Clone(s.Waves)
	if s.Abort != nil {
		a := *s.Abort
		s.Abort = &a
	}
	s.Gates = slices.Clone(s.Gates)
	for i := range s.Gates {
		s.Gates[i].Max = clonePtr(s.Gates[i].Max)
		s.Gates[i].Min = clonePtr(s.Gates[i].Min)
	}
	if s.Window != nil {
		w := *s.Window
		s.Window = &w
	}
	s.Policies = slices.Clone(s.Policies)
	return o
}

// DeepCopy returns a copy of the release sharing nothing with it.
func (o Release) DeepCopy() Release {
	o.Metadata = o.Metadata.DeepCopy()
	s := &o.Spec
	s.Targets = slices.Clone(s.Targets)
	if s.After != nil {
		a := *s.After
		s.After = &a
	}
	if h := s.Runtime.HealthCheck; h != nil {
		c := *h
		c.Exec = slices.Clone(c.Exec)
		s.Runtime.HealthCheck = &c
	}
	s.Runtime.Restart = slices.Clone(s.Runtime.Restart)
	s.Runtime.Stop = slices.Clone(s.Runtime.Stop)
	s.Prune = clonePtr(s.Prune)
	if k := s.Kubernetes; k != nil {
		c := *k
		if k.Replicas != nil {
			r := *k.Replicas
			c.Replicas = &r
		}
		if k.Prune != nil {
			p := *k.Prune
			c.Prune = &p
		}
		c.Resources.Requests = maps.Clone(k.Resources.Requests)
		c.Resources.Limits = maps.Clone(k.Resources.Limits)
		c.Env = slices.Clone(k.Env)
		s.Kubernetes = &c
	}
	if m := s.Monitor; m != nil {
		c := *m
		if c.Drift != nil {
			dm := *c.Drift
			dm.Max = clonePtr(dm.Max)
			c.Drift = &dm
		}
		s.Monitor = &c
	}
	if f := s.Feedback; f != nil {
		c := *f
		s.Feedback = &c
	}
	s.Evaluation = s.Evaluation.DeepCopy()
	return o
}

// DeepCopy returns a copy of the alert sharing nothing with it.
func (o Alert) DeepCopy() Alert {
	o.Metadata = o.Metadata.DeepCopy()
	o.Spec.Events = slices.Clone(o.Spec.Events)
	return o
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func deepCopyAll[T interface{ DeepCopy() T }](s []T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	for i, o := range s {
		out[i] = o.DeepCopy()
	}
	return out
}
