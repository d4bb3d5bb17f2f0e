package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
)

const feedbackManifests = `apiVersion: cairn.dev/v1alpha1
kind: DeviceProfile
metadata: {name: edge}
spec:
  selector:
    matchLabels: {env: prod}
---
apiVersion: cairn.dev/v1alpha1
kind: Model
metadata: {name: demo}
spec:
  version: "1.0.0"
  artifact: %s
---
apiVersion: cairn.dev/v1alpha1
kind: Release
metadata: {name: demo}
spec:
  model: demo
  targets: [{profile: edge}]
  runtime:
    healthCheck:
      exec: [sh, -c, 'test -f "$CAIRN_MODEL_DIR/ok"']
      period: 200ms
      timeout: 5s
  feedback: {sample: 1, maxPerDay: 1Mi}
`

// TestFeedbackEndToEnd: a Release's feedback makes a real agent upload
// what its runtime spooled in CAIRN_FEEDBACK_DIR, through cairn serve into
// the server's default dataset store; `cairn get feedback --target` lists
// it, `cairn data pull` restores exactly the spooled lines, and lineage
// names the target (observedBy) and the model digest (servedBy).
func TestFeedbackEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds cairn and runs a server and an agent")
	}
	bin := cairnBin(t)
	work := t.TempDir()
	logs := filepath.Join(work, "logs")
	os.MkdirAll(logs, 0o755)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"serve", "agent"} {
				b, _ := os.ReadFile(filepath.Join(logs, f+".log"))
				lines := strings.Split(string(b), "\n")
				t.Logf("last lines of %s.log:\n%s", f, strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
	repo := filepath.Join(work, "repo")
	os.MkdirAll(filepath.Join(repo, "manifests"), 0o755)
	run(t, repo, "git", "init", "-q", "-b", "main")
	commit := func(msg, body string) {
		t.Helper()
		os.WriteFile(filepath.Join(repo, "manifests", "fleet.yaml"), []byte(body), 0o644)
		run(t, repo, "git", "add", "-A")
		run(t, repo, "git", "commit", "-q", "--allow-empty", "-m", msg)
	}
	commit("empty", "")
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	server := "http://" + addr
	data := filepath.Join(work, "data")
	cfg := filepath.Join(work, "serve.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: %s\ndata: %s\nrepo: %s\ninterval: 1s\npollInterval: 1s\nreconcileInterval: 500ms\nenrollToken: e2e-enroll\nadminToken: e2e-admin\nenrollment: auto\n", addr, data, repo)), 0o644)
	tokenFile := filepath.Join(work, "enroll-token")
	os.WriteFile(tokenFile, []byte("e2e-enroll\n"), 0o600)
	start(t, logs, "serve", bin, "serve", "--config", cfg)
	eventually(t, 30*time.Second, "cairn serve to listen", func() (bool, string) {
		resp, err := http.Get(server + "/v2/")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return true, ""
	})
	view := fleetView{admin: fleet.NewAdminClient(server, "e2e-admin")}

	mdir := filepath.Join(work, "model")
	os.MkdirAll(mdir, 0o755)
	os.WriteFile(filepath.Join(mdir, "model.onnx"), []byte("weights v1"), 0o644)
	os.WriteFile(filepath.Join(mdir, "ok"), nil, 0o644)
	out := strings.TrimSpace(run(t, work, bin, "model", "push", addr+"/models/demo:1", mdir, "--plain-http", "--name", "demo", "--version", "1.0.0", "--token", "e2e-admin"))
	ref := out[strings.LastIndexByte(out, '\n')+1:]
	commit("v1", fmt.Sprintf(feedbackManifests, ref))

	root := filepath.Join(work, "agent")
	start(t, logs, "agent", bin, "agent", "--server", server, "--enroll-token-file", tokenFile, "--name", "device-3",
		"--labels", "env=prod", "--root", root, "--poll-wait", "1s", "--max-backoff", "1s")
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
		out := run(t, work, bin, "get", "feedback", "--target", "device-3", "--server", server, "--token", "e2e-admin", "-o", "json")
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
	t.Logf("cairn get feedback --target device-3:\n%s", run(t, work, bin, "get", "feedback", "--target", "device-3", "--server", server, "--token", "e2e-admin"))

	pulled := filepath.Join(work, "pulled")
	run(t, work, bin, "data", "pull", batch.Dataset, "--store", "file://"+filepath.Join(data, "datasets"), "-o", pulled)
	got, err := os.ReadFile(filepath.Join(pulled, "inputs.jsonl"))
	if err != nil || string(got) != lines.String() {
		t.Fatalf("pulled %d bytes (%v), want the 50 spooled lines", len(got), err)
	}

	up, err := lineage.NewClient(server, "e2e-admin").Upstream(t.Context(), lineage.Node(lineage.NodeDataset, batch.Dataset), 1)
	if err != nil {
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
