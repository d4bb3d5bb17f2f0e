package kube

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// State is a workload's health.
type State int

// States of a workload, kstatus style.
const (
	Progressing State = iota
	Healthy
	Failed
)

func (s State) String() string {
	switch s {
	case Healthy:
		return "Healthy"
	case Failed:
		return "Failed"
	}
	return "Progressing"
}

// Health is a workload's state and why.
type Health struct {
	State   State
	Message string
}

// WorkloadHealth reads a workload's health from its own status: an
// InferenceService by its observed generation, Ready condition and
// modelStatus.lastFailureInfo; anything else (a Deployment) by kstatus.
func WorkloadHealth(u *unstructured.Unstructured) Health {
	ref := u.GetKind() + "/" + u.GetName()
	if u.GetKind() == "InferenceService" {
		h := isvcHealth(u)
		h.Message = ref + ": " + h.Message
		return h
	}
	res, err := status.Compute(u)
	if err != nil {
		return Health{Progressing, fmt.Sprintf("%s: status: %v", ref, err)}
	}
	switch res.Status {
	case status.CurrentStatus:
		return Health{Healthy, ref + ": " + res.Message}
	case status.FailedStatus:
		msg := res.Message
		if c := condition(u, "Progressing"); c.status == "False" && c.reason != "" {
			msg = c.reason
			if c.message != "" {
				msg += ": " + c.message
			}
		}
		return Health{Failed, ref + ": " + msg}
	}
	return Health{Progressing, ref + ": " + res.Message}
}

func isvcHealth(u *unstructured.Unstructured) Health {
	og, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	if !found || og != u.GetGeneration() {
		return Health{Progressing, fmt.Sprintf("generation %d not observed yet", u.GetGeneration())}
	}
	ready := condition(u, "Ready")
	switch ready.status {
	case "True":
		return Health{Healthy, "Ready"}
	case "False":
		reason, msg := ready.reason, ready.message
		if r, _, _ := unstructured.NestedString(u.Object, "status", "modelStatus", "lastFailureInfo", "reason"); r != "" {
			reason = r
			if m, _, _ := unstructured.NestedString(u.Object, "status", "modelStatus", "lastFailureInfo", "message"); m != "" {
				msg = m
			}
		}
		if reason != "" {
			if msg != "" {
				reason += ": " + msg
			}
			return Health{Failed, "Ready=False: " + reason}
		}
		return Health{Progressing, "Ready=False " + strings.TrimSpace(msg)}
	}
	return Health{Progressing, "not Ready yet"}
}

type cond struct{ status, reason, message string }

func condition(u *unstructured.Unstructured, typ string) cond {
	cs, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range cs {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != typ {
			continue
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		return cond{s("status"), s("reason"), s("message")}
	}
	return cond{}
}
