package reconciler

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

// A Release's feedback reaches the target's desired state; the target's
// uploads become dataset versions in the server's default dataset store,
// listed by target, pulled back with registry/datasets (as cairn data pull
// does), linked in lineage (observedBy the target, servedBy the model);
// a retried upload is stored once; uploads for another digest, a release
// without feedback, bad JSON or past the day's budget are refused.
func TestFeedbackUploadsThroughServe(t *testing.T) {
	url, work := gitServer(t)
	withFeedback := strings.Replace(manifestsFor(1), "  runtime: {path: /var/lib/m}\n", "  runtime: {path: /var/lib/m}\n  feedback: {sample: 0.5, maxPerDay: 300}\n", 1)
	commitPush(t, work, withFeedback, "v1")
	data := t.TempDir()
	cfg := Config{Repo: url, Interval: Duration(200 * time.Millisecond), EnrollToken: "enroll-secret", AdminToken: "admin-secret",
		ReconcileInterval: Duration(200 * time.Millisecond), Data: data}
	base := startServe(t, cfg)
	c := fleet.NewClient(base)
	er := enroll(t, c, "device-3")
	waitDigest(t, c, er, digestOf(1), 10*time.Second)
	ds, _, err := c.Desired(context.Background(), er.ID, er.Credential, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if f := ds.Models[0].Feedback; f == nil || f.Sample != 0.5 || f.MaxPerDay != 300 || f.Store != "default" {
		t.Fatalf("desired feedback %+v", ds.Models[0].Feedback)
	}
	ctx := context.Background()
	upload := func(release, digest, body string) (*fleet.FeedbackBatch, error) {
		return c.UploadFeedback(ctx, er.ID, er.Credential, release, digest, strings.NewReader(body))
	}
	lines := `{"rms": 0.41, "kurtosis": 3.1}` + "\n" + `{"rms": 0.44, "kurtosis": 2.9}` + "\n\n" + `{"rms": 0.39, "kurtosis": 3.3}` + "\n"
	b, err := upload("r", digestOf(1), lines)
	if err != nil {
		t.Fatal(err)
	}
	if b.Records != 3 || b.Target != "device-3" || b.ModelDigest != digestOf(1) || !strings.HasPrefix(b.Dataset, "sha256:") {
		t.Fatalf("batch %+v", b)
	}
	again, err := upload("r", digestOf(1), lines) // the answer was lost: the agent sends it again
	if err != nil || again.Dataset != b.Dataset || !again.Time.Equal(b.Time) {
		t.Fatalf("retried upload: %+v, %v; want the first %+v", again, err, b)
	}
	for _, tc := range []struct {
		name, release, digest, body string
		status                      int
	}{
		{"another digest", "r", digestOf(2), lines, http.StatusConflict},
		{"a release not desired", "other", digestOf(1), lines, http.StatusConflict},
		{"not JSON lines", "r", digestOf(1), "{\"rms\": 1}\nnot json\n", http.StatusBadRequest},
		{"empty", "r", digestOf(1), "\n\n", http.StatusBadRequest},
		{"past the day's budget", "r", digestOf(1), strings.Repeat(`{"rms": 0.5}`+"\n", 20), http.StatusTooManyRequests},
	} {
		_, err := upload(tc.release, tc.digest, tc.body)
		var ae *fleet.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status {
			t.Errorf("%s: %v, want %d", tc.name, err, tc.status)
		}
	}
	if _, err := c.UploadFeedback(ctx, er.ID, "wrong-credential", "r", digestOf(1), strings.NewReader(lines)); !errors.Is(err, fleet.ErrUnauthorized) {
		t.Errorf("a wrong credential: %v", err)
	}

	admin := fleet.NewAdminClient(base, "admin-secret")
	list, err := admin.Feedback(ctx, "device-3", "")
	if err != nil || len(list) != 1 || list[0].Dataset != b.Dataset || list[0].Records != 3 {
		t.Fatalf("feedback of device-3: %+v, %v", list, err)
	}
	if other, err := admin.Feedback(ctx, "device-4", ""); err != nil || len(other) != 0 {
		t.Fatalf("feedback of device-4: %+v, %v", other, err)
	}

	store, err := blobs.Open(ctx, "file://"+filepath.Join(data, "datasets"))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := datasets.Pull(ctx, store, b.Dataset, out, datasets.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(out, "inputs.jsonl"))
	want := strings.ReplaceAll(lines, "\n\n", "\n")
	if string(got) != want {
		t.Fatalf("pulled %q, want %q", got, want)
	}

	up, err := lineage.NewClient(base, "admin-secret").Upstream(ctx, lineage.Node(lineage.NodeDataset, b.Dataset), 1)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, l := range up.Links {
		links[l.Type] = l.To
	}
	if links[lineage.EdgeObservedBy] != "target:device-3" || links[lineage.EdgeServedBy] != "model:"+digestOf(1) {
		t.Fatalf("lineage of %s: %+v", b.Dataset, up.Links)
	}
}
