package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/manifests"
)

const evaluationManifests = `apiVersion: cairn.dev/v1alpha1
kind: Dataset
metadata: {name: bearing-holdout}
spec:
  digest: %s
---
` + edgeProfile + `---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: bearing}
spec:
  version: "%s"
  artifact: %s
---
apiVersion: cairn.dev/v1alpha1
kind: RolloutPolicy
metadata: {name: evaluated}
spec:
  waves: [{percent: 100}]
  policies: [evaluation]
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: bearing-prod}
spec:
  model: bearing
  targets: [{profile: edge}]
  rolloutPolicy: evaluated
  runtime:
    healthCheck:
      exec: [%s, selftest]
      period: 200ms
      timeout: 10s
  evaluation:
    schedule: "0 3 * * *"
    dataset: bearing-holdout
    command: [%s, evaluate]
    timeout: 2m
    metrics:
      auc: {min: 0.9, maxDrop: 0.02}
`

// TestEvaluationEndToEnd: a Release's evaluation makes cairn serve ask a
// real evaluator agent (cairn.dev/role=evaluator) to score the candidate,
// then the candidate against the live champion, on the holdout dataset it
// pulls through the server by digest, with examples/bearing's evaluate
// command. v1 (no champion) passes and rolls out; v2, worse on the
// holdout by more than maxDrop, is denied by the evaluation policy with a
// reason naming auc, and the device keeps v1. Each result is an
// evaluatedOn edge in lineage.
func TestEvaluationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and the examples and runs a server and two agents")
	}
	_, bearingBin := examplesBins(t)
	s := newServer(t, serveOptions{})
	work, data := s.work, s.data
	admin := s.view().admin
	view := fleetView{admin: admin}
	commit := s.commit

	// The holdout in the server's default dataset store; v1 trained fully,
	// v2 for one step: worse on the holdout.
	run(t, work, bearingBin, "gen", "--out", filepath.Join(work, "bearing"), "--seed", "1")
	out := strings.TrimSpace(s.cairn("data", "push", filepath.Join(work, "bearing", "holdout"), "--store", "file://"+filepath.Join(data, "datasets"), "--no-cache"))
	holdout := out[strings.LastIndexByte(out, '\n')+1:]
	push := func(version string, args ...string) string {
		dir := filepath.Join(work, "model-"+version)
		run(t, work, bearingBin, append([]string{"train", "--data", filepath.Join(work, "bearing", "train"), "--out", dir, "--version", version}, args...)...)
		return s.push("models/bearing:"+version, []string{dir}, "--name", "bearing", "--version", version, "--format", "raw")
	}
	v1, v2 := push("1.0.0"), push("2.0.0", "--epochs", "1", "--seed", "3")
	d1, d2 := digestOf(v1), digestOf(v2)
	t.Logf("holdout %s; v1 %s; v2 %s", short(holdout), short(d1), short(d2))

	s.agent("device-1", "--labels", "env=prod")
	// The evaluator is cairn agent: cairn-agent has no holdout pull.
	s.start("evaluator-1", s.bin, append([]string{"agent"}, s.agentArgs("evaluator-1", "--labels", manifests.RoleLabel+"="+manifests.RoleEvaluator)...)...)
	eventually(t, 30*time.Second, "both agents enrolled", func() (bool, string) {
		return len(view.targets(t)) == 2, fmt.Sprintf("%d targets", len(view.targets(t)))
	})

	// v1: the evaluator scores it (there is no champion yet); it passes,
	// is admitted and rolls out.
	commit("v1", fmt.Sprintf(evaluationManifests, holdout, "1.0.0", v1, bearingBin, bearingBin))
	eventually(t, 90*time.Second, "device-1 healthy on v1", func() (bool, string) {
		for _, ti := range view.targets(t) {
			if rs := releaseStatus(ti, "bearing-prod"); ti.Name == "device-1" && rs.Phase == fleet.PhaseHealthy && rs.Digest == d1 {
				return true, ""
			}
		}
		return false, "not yet"
	})
	evals := evaluationsOf(t, admin)
	if len(evals) != 1 || evals[0].Verdict == nil || !evals[0].Verdict.Pass || len(evals[0].Results) != 1 || evals[0].Evaluator != "evaluator-1" {
		t.Fatalf("after v1: evaluations %+v", evals)
	}
	champAUC := evals[0].Results[0].Metrics["auc"]
	t.Logf("v1 scored auc %.4f on the holdout by %s", champAUC, evals[0].Evaluator)
	eventually(t, 30*time.Second, "the v1 rollout to succeed", func() (bool, string) {
		r := view.release(t, "bearing-prod")
		if r == nil {
			return false, "no release"
		}
		return r.Phase == "Succeeded" && r.Digest == d1, r.Phase
	})

	// v2: scored with the champion v1 on the holdout, worse by more than
	// maxDrop: denied, naming auc; device-1 keeps v1.
	commit("v2", fmt.Sprintf(evaluationManifests, holdout, "2.0.0", v2, bearingBin, bearingBin))
	var denied string
	eventually(t, 90*time.Second, "v2 denied by the evaluation policy", func() (bool, string) {
		r := view.release(t, "bearing-prod")
		if r == nil {
			return false, "no release"
		}
		denied = r.Denied
		return strings.Contains(denied, "auc"), denied
	})
	t.Logf("denied: %s", denied)
	if !strings.Contains(denied, "evaluation on bearing-holdout: auc") || !strings.Contains(denied, "below the champion's") {
		t.Fatalf("denial %q does not name the metric against the champion", denied)
	}
	evs, err := admin.Events(context.Background(), fleet.EventFilter{Release: "bearing-prod"})
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, e := range evs {
		if e.Type == manifests.EventEvaluated || e.Type == manifests.EventPolicyDenied {
			verdicts = append(verdicts, e.Type+": "+e.Message)
		}
	}
	t.Logf("events:\n%s", strings.Join(verdicts, "\n"))
	if len(verdicts) < 3 || !strings.Contains(strings.Join(verdicts, "\n"), "candidate fails: auc") {
		t.Fatalf("no Evaluated event with the failing verdict")
	}
	evals = evaluationsOf(t, admin)
	last := evals[0]
	if last.Verdict == nil || last.Verdict.Pass || len(last.Results) != 2 {
		t.Fatalf("v2 run %+v", last)
	}
	got := map[string]fleet.EvaluationResult{}
	for _, r := range last.Results {
		got[r.Role] = r
	}
	if got[fleet.RoleCandidate].Digest != d2 || got[fleet.RoleChampion].Digest != d1 || got[fleet.RoleChampion].Metrics["auc"] != champAUC ||
		got[fleet.RoleCandidate].Metrics["auc"] >= champAUC-0.02 {
		t.Fatalf("v2 results %+v", last.Results)
	}
	t.Logf("cairn get evaluations:\n%s", s.api("get", "evaluations"))
	for _, ti := range view.targets(t) {
		if rs := releaseStatus(ti, "bearing-prod"); ti.Name == "device-1" && rs.Digest != d1 {
			t.Fatalf("device-1 runs %s after the denial, want v1 %s", rs.Digest, d1)
		}
	}
	// The evaluator was never a target of the release.
	for _, ti := range view.targets(t) {
		if ti.Name == "evaluator-1" && len(ti.Releases) != 0 {
			t.Fatalf("evaluator-1 runs %+v", ti.Releases)
		}
	}

	// Lineage: both models evaluatedOn the holdout, with their metrics.
	for _, d := range []string{d1, d2} {
		var up lineage.Subgraph
		if err := json.Unmarshal([]byte(s.lineage(nil).run(t, "upstream", lineage.Node(lineage.NodeModel, d), "--depth", "1", "-o", "json")), &up); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, l := range up.Links {
			if l.Type == lineage.EdgeEvaluatedOn && l.To == lineage.Node(lineage.NodeDataset, holdout) {
				found = true
			}
		}
		if !found {
			b, _ := json.Marshal(up.Links)
			t.Fatalf("lineage of %s has no evaluatedOn %s: %s", short(d), short(holdout), b)
		}
	}
}

func evaluationsOf(t *testing.T, admin *fleet.AdminClient) []fleet.EvaluationRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err := admin.Evaluations(ctx, "bearing-prod")
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
