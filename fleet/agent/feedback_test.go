package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// feedbackAPI is memAPI taking feedback uploads: the first fails times
// fail with a connection error, after the bytes were read.
type feedbackAPI struct {
	*memAPI
	mu       sync.Mutex
	fail     int
	attempts [][]byte
	accepted [][]byte
}

func (f *feedbackAPI) UploadFeedback(ctx context.Context, id, cred, release, digest string, r io.Reader) (*fleet.FeedbackBatch, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, b)
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("upload feedback: connection reset")
	}
	f.accepted = append(f.accepted, b)
	return &fleet.FeedbackBatch{Dataset: "sha256:feed", Records: int64(bytes.Count(b, []byte("\n"))), Release: release, ModelDigest: digest}, nil
}

func spool(t *testing.T, dir, name string, lines int) string {
	t.Helper()
	var b strings.Builder
	for i := range lines {
		fmt.Fprintf(&b, "{\"rms\": %d}\n", i)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// The agent samples what the runtime spooled in CAIRN_FEEDBACK_DIR, keeps
// each batch until the server takes it (the same bytes after a failed
// upload), leaves files still being written alone, and removes spooled
// files of a release that asks for no feedback.
func TestFeedbackSampledAndUploadedOnce(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1", "ok": ""})
	envFile := filepath.Join(t.TempDir(), "feedback-dir")
	v1.Runtime = fleet.Runtime{Path: filepath.Join(t.TempDir(), "serving"), HealthCheck: &fleet.HealthCheck{
		Exec: []string{"sh", "-c", `test -f "$CAIRN_MODEL_DIR/ok" && printf %s "$CAIRN_FEEDBACK_DIR" > ` + envFile}, Period: 10 * time.Millisecond, Timeout: 5 * time.Second}}
	v1.Feedback = &fleet.Feedback{Sample: 1, MaxPerDay: 1 << 20}
	api := &feedbackAPI{memAPI: newMemAPI(), fail: 1}
	root := t.TempDir()
	a := newTestAgent(t, root, api, nil)
	ds := &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}
	if err := a.Apply(bg, ds); err != nil {
		t.Fatal(err)
	}
	dir := a.FeedbackDir("demo")
	if got, _ := os.ReadFile(envFile); string(got) != dir {
		t.Fatalf("CAIRN_FEEDBACK_DIR %q, want %q", got, dir)
	}
	all := spool(t, dir, "0001.jsonl", 100)
	spool(t, dir, ".0002.jsonl.tmp", 10) // still being written

	a.SendFeedback(bg, ds) // the upload fails: the batch waits
	if len(api.accepted) != 0 || len(api.attempts) != 1 {
		t.Fatalf("attempts %d, accepted %d", len(api.attempts), len(api.accepted))
	}
	if _, err := os.Stat(filepath.Join(dir, "0001.jsonl")); !os.IsNotExist(err) {
		t.Fatalf("spool file kept after sampling: %v", err)
	}
	a.SendFeedback(bg, ds)
	if len(api.accepted) != 1 || string(api.accepted[0]) != all || !bytes.Equal(api.attempts[0], api.attempts[1]) {
		t.Fatalf("accepted %d batches; the retry sent other bytes: %q vs %q", len(api.accepted), api.attempts[0], api.attempts[1])
	}
	a.SendFeedback(bg, ds) // nothing new
	if len(api.attempts) != 2 {
		t.Fatalf("%d attempts, want 2", len(api.attempts))
	}
	if _, err := os.Stat(filepath.Join(dir, ".0002.jsonl.tmp")); err != nil {
		t.Fatalf("a file being written was touched: %v", err)
	}

	// A tenth of 2,000 lines.
	ds.Models[0].Feedback.Sample = 0.1
	spool(t, dir, "0003.jsonl", 2000)
	a.SendFeedback(bg, ds)
	if len(api.accepted) != 2 {
		t.Fatalf("accepted %d batches, want 2", len(api.accepted))
	}
	if n := bytes.Count(api.accepted[1], []byte("\n")); n < 120 || n > 290 {
		t.Fatalf("sampled %d of 2000 lines at 0.1", n)
	}

	// No feedback asked: spooled files are removed, nothing is sent.
	ds.Models[0].Feedback = nil
	spool(t, dir, "0004.jsonl", 10)
	a.SendFeedback(bg, ds)
	if _, err := os.Stat(filepath.Join(dir, "0004.jsonl")); !os.IsNotExist(err) || len(api.attempts) != 3 {
		t.Fatalf("spool of a release without feedback: %v, %d attempts", err, len(api.attempts))
	}
}

// Waiting batches never hold more than a day's budget.
func TestFeedbackOutgoingBounded(t *testing.T) {
	out := t.TempDir()
	for i := range 5 {
		os.WriteFile(filepath.Join(out, fmt.Sprintf("%d.jsonl", i)), bytes.Repeat([]byte("x"), 100), 0o644)
	}
	if n := trimOutgoing(out, 250); n != 3 {
		t.Fatalf("removed %d, want 3", n)
	}
	names, _ := filepath.Glob(filepath.Join(out, "*.jsonl"))
	if len(names) != 2 || filepath.Base(names[0]) != "3.jsonl" {
		t.Fatalf("kept %v, want the newest two", names)
	}
}
