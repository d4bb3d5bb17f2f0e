package reconciler

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// Alerts go through the outbox of the state database: a webhook answering
// 500 keeps them pending (cairn get alerts shows why), a restart of the
// server keeps them, and once the webhook answers 200 each delivery id is
// accepted exactly once. The backoff is shortened for the test
// (alertBackoff: 50ms, doubling up to 1h as in production).
func TestAlertsSurviveFailingWebhookAndRestart(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	accepted := map[string]int{}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		mu.Lock()
		accepted[r.Header.Get("X-Cairn-Delivery")]++
		mu.Unlock()
	}))
	defer recv.Close()
	alert := `---
apiVersion: cairn.dev/v1alpha1
kind: Alert
metadata: {name: ops}
spec:
  events: [RolloutStarted, RolloutSucceeded]
  webhook: {url: "` + recv.URL + `"}
`
	url, work := gitServer(t)
	commitPush(t, work, manifestsFor(1)+alert, "v1")
	cfg := Config{Repo: url, Interval: Duration(200 * time.Millisecond), EnrollToken: "enroll-secret", AdminToken: "admin-secret",
		ReconcileInterval: Duration(200 * time.Millisecond), AlertBackoff: Duration(50 * time.Millisecond), Data: t.TempDir()}
	base, stop := startServeStop(t, cfg)
	c := fleet.NewClient(base)
	er := enroll(t, c, "dev-a")
	healthy := func(c *fleet.Client, n int) {
		t.Helper()
		waitDigest(t, c, er, digestOf(n), 10*time.Second)
		if err := c.ReportStatus(context.Background(), er.ID, er.Credential, fleet.StatusReport{Releases: []fleet.ReleaseStatus{
			{Release: "r", Phase: fleet.PhaseHealthy, Digest: digestOf(n), Desired: digestOf(n)}}}); err != nil {
			t.Fatal(err)
		}
	}
	healthy(c, 1)
	pending := func(base string) []fleet.AlertDelivery {
		ds, err := fleet.NewAdminClient(base, "admin-secret").Alerts(context.Background(), "pending", "failed")
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(pending(base)) < 2 || pending(base)[0].Attempts < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("alerts pending: %+v", pending(base))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := pending(base)[0]; d.State != "pending" || !strings.Contains(d.LastError, "500") {
		t.Fatalf("pending delivery: %+v", d)
	}
	stop() // restart while the webhook still fails
	base = startServe(t, cfg)
	c = fleet.NewClient(base)
	commitPush(t, work, manifestsFor(2)+alert, "v2")
	healthy(c, 2)
	time.Sleep(500 * time.Millisecond)
	failing.Store(false)
	deadline = time.Now().Add(20 * time.Second)
	for len(pending(base)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still pending after the webhook recovered: %+v", pending(base))
		}
		time.Sleep(50 * time.Millisecond)
	}
	all, _ := fleet.NewAdminClient(base, "admin-secret").Alerts(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(all) < 3 || len(accepted) != len(all) {
		t.Fatalf("%d deliveries, %d accepted ids: %v", len(all), len(accepted), accepted)
	}
	for _, d := range all {
		if accepted[d.ID] != 1 || d.State != "delivered" {
			t.Errorf("delivery %s (%s, %d attempts) accepted %d times", d.ID, d.State, d.Attempts, accepted[d.ID])
		}
	}
	t.Logf("%d deliveries, each accepted once after failing attempts (%d attempts for the first)", len(all), all[len(all)-1].Attempts)
}
