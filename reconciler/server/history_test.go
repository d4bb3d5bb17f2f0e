package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// TestHistoryRoutes: status reports reach the history through OnReport, and
// its API answers the admin and read-only tokens only.
func TestHistoryRoutes(t *testing.T) {
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	h, err := history.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Store: st, EnrollToken: "e", AutoAccept: true, AdminToken: "a", ReadToken: "r", History: history.NewHandler(h),
		OnReport: func(_ context.Context, id string, rep fleet.StatusReport) { h.Observe(id, rep, time.Now()) }})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	c := fleet.NewClient(hs.URL)
	er, err := c.Enroll(ctx, fleet.EnrollRequest{Token: "e", Name: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReportStatus(ctx, er.ID, er.Credential, fleet.StatusReport{Metrics: map[string]float64{"cpu_percent": 42}}); err != nil {
		t.Fatal(err)
	}
	m, err := history.NewClient(hs.URL, "r").Metrics(ctx, "dev-1", "1h", "", "1m")
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Series["cpu"]; len(p) != 1 || p[0].Avg != 42 {
		t.Errorf("cpu history %+v, want one point of 42", p)
	}
	u, err := history.NewClient(hs.URL, "a").Uptime(ctx, "1d", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Targets) != 1 || !u.Targets[0].Online {
		t.Errorf("uptime %+v, want dev-1 online", u.Targets)
	}
	for _, path := range []string{"/api/v1/uptime", "/api/v1/targets/dev-1/metrics"} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, resp.StatusCode)
		}
	}
}
