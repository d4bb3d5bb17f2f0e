package reconciler

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/policies"
	"github.com/cairn-dev/cairn/reconciler/plan"
)

func TestAdmissionStep(t *testing.T) {
	deny := []policies.Verdict{{Policy: "fits-device", Result: policies.Deny, Message: "too big"}}
	warn := []policies.Verdict{{Policy: "require-evaluation", Result: policies.Warn, Message: "no evaluation"}}
	for _, tc := range []struct {
		name    string
		pr      plan.Release
		reason  string // "" admits
		stall   bool
		requeue time.Duration
		held    bool // heldBy: held, not denied
		message string
	}{
		{name: "allowed", pr: plan.Release{Verdicts: warn}},
		{name: "denied", pr: plan.Release{Verdicts: deny}, reason: ReasonPolicyDenied, stall: true, message: "fits-device: too big"},
		{name: "artifact missing", pr: plan.Release{Held: "model artifact x is not in its registry"},
			reason: ReasonArtifactMissing, stall: true, held: true, message: "model artifact x is not in its registry"},
		{name: "registry down", pr: plan.Release{Unavailable: "registry of x unavailable"},
			reason: ReasonArtifactUnavailable, requeue: admitRetry, held: true, message: "registry of x unavailable"},
		{name: "registry down and denied: the denial may rest on unknown sizes", pr: plan.Release{Unavailable: "down", Verdicts: deny},
			reason: ReasonArtifactUnavailable, requeue: admitRetry, held: true, message: "down"},
		{name: "missing and denied: the denial is the verdict", pr: plan.Release{Held: "gone", Verdicts: deny},
			reason: ReasonPolicyDenied, stall: true, message: "fits-device: too big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := admission(tc.pr)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("admission = %v, want nil", err)
				}
				return
			}
			var st *Stalling
			var w *Waiting
			switch {
			case tc.stall && (!errors.As(err, &st) || st.Reason != tc.reason):
				t.Fatalf("admission = %#v, want Stalling %s", err, tc.reason)
			case !tc.stall && (!errors.As(err, &w) || w.Reason != tc.reason):
				t.Fatalf("admission = %#v, want Waiting %s", err, tc.reason)
			}
			if got := requeueOf(err); got != tc.requeue {
				t.Errorf("requeue = %s, want %s", got, tc.requeue)
			}
			if err.Error() != tc.message {
				t.Errorf("message = %q, want %q", err, tc.message)
			}
			if _, held := heldBy(err); held != tc.held {
				t.Errorf("heldBy = %v, want %v", held, tc.held)
			}
			cond := heldCondition(err, "abc123")
			if requeueOf(cond) != tc.requeue || !strings.Contains(cond.Error(), "keeping abc123: "+tc.message) {
				t.Errorf("heldCondition = %v (requeue %s)", cond, requeueOf(cond))
			}
			s := &Status{}
			markError(s, cond)
			if stalled := s.Wire(); len(stalled) == 0 {
				t.Errorf("no conditions set for %v", cond)
			}
		})
	}
}
