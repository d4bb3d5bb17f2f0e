package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
)

// TestFeedbackEndToEnd: a Release's feedback makes a real agent upload
// what its runtime spooled in CAIRN_FEEDBACK_DIR, through cairn serve into
// the server's default dataset store; `cairn get feedback --target` lists
// it, `cairn data pull` restores exactly the spooled lines, and lineage
// names the target (observedBy) and the model digest (servedBy).
func TestFeedbackEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server and an agent")
	}
	s := newServer(t, serveOptions{})
	view := s.view()

	mdir := filepath.Join(s.work, "model")
	writeFiles(t, mdir, map[string][]byte{"model.onnx": []byte("weights v1"), "ok": nil})
	ref := s.push("models/demo:1", []string{mdir}, "--name", "demo", "--version", "1.0.0")
	s.commit("v1", edgeProfile+demoRelease("1.0.0", ref, "edge", "  feedback: {sample: 1, maxPerDay: 1Mi}\n"))

	s.agent("device-3", "--labels", "env=prod")
	root := s.agentRoot("device-3")
	eventually(t, 60*time.Second, "device-3 healthy on v1", func() (bool, string) {
		for _, ti := range view.targets(t) {
			if rs := releaseStatus(ti, "demo"); ti.Name == "device-3" && rs.Phase == fleet.PhaseHealthy && rs.Digest == digestOf(ref) {
				return true, ""
			}
		}
		return false, "not yet"
	})

	// The runtime spools what it saw: written aside, renamed when complete.
	spool := filepath.Join(root, "models", "demo", "feedback")
	os.MkdirAll(spool, 0o755)
	var lines strings.Builder
	for i := range 50 {
		fmt.Fprintf(&lines, "{\"rms\": %.3f, \"kurtosis\": %.3f}\n", 0.4+float64(i)/1000, 3+float64(i)/100)
	}
	os.WriteFile(filepath.Join(spool, ".batch.tmp"), []byte(lines.String()), 0o644)
	os.Rename(filepath.Join(spool, ".batch.tmp"), filepath.Join(spool, "0001.jsonl"))

	var batch fleet.FeedbackBatch
	eventually(t, 30*time.Second, "cairn get feedback --target device-3 to list the upload", func() (bool, string) {
		out := s.api("get", "feedback", "--target", "device-3", "-o", "json")
		var bs []fleet.FeedbackBatch
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			return false, err.Error()
		}
		if len(bs) != 1 {
			return false, fmt.Sprintf("%d batches", len(bs))
		}
		batch = bs[0]
		return true, ""
	})
	if batch.Records != 50 || batch.Release != "demo" || batch.ModelDigest != digestOf(ref) {
		t.Fatalf("batch %+v", batch)
	}
	t.Logf("cairn get feedback --target device-3:\n%s", s.api("get", "feedback", "--target", "device-3"))

	pulled := filepath.Join(s.work, "pulled")
	s.cairn("data", "pull", batch.Dataset, "--store", "file://"+filepath.Join(s.data, "datasets"), "-o", pulled)
	got, err := os.ReadFile(filepath.Join(pulled, "inputs.jsonl"))
	if err != nil || string(got) != lines.String() {
		t.Fatalf("pulled %d bytes (%v), want the 50 spooled lines", len(got), err)
	}

	var up lineage.Subgraph
	if err := json.Unmarshal([]byte(s.lineage(nil).run(t, "upstream", "dataset:"+batch.Dataset, "--depth", "1", "-o", "json")), &up); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, l := range up.Links {
		links[l.Type] = l.To
	}
	if links[lineage.EdgeObservedBy] != "target:device-3" || links[lineage.EdgeServedBy] != "model:"+digestOf(ref) {
		t.Fatalf("lineage of %s: %+v", batch.Dataset, up.Links)
	}
	if names, _ := filepath.Glob(filepath.Join(root, "models", "demo", "feedback*", "*.jsonl")); len(names) != 0 {
		t.Fatalf("agent kept %v after the upload", names)
	}
}
