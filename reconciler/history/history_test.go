package history_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/testenv"
	"github.com/cairn-dev/cairn/reconciler/history"
)

// backends opens a fresh database of each kind for the contract suite.
var backends = map[string]func(t *testing.T) *sqldb.DB{}

func init() {
	for name, dsn := range testenv.Databases("history") {
		backends[name] = func(t *testing.T) *sqldb.DB { return openDB(t, dsn(t)) }
	}
}

func openDB(t *testing.T, dsn string) *sqldb.DB {
	t.Helper()
	db, err := sqldb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func open(t *testing.T, db *sqldb.DB, c *clock) *history.History {
	t.Helper()
	h, err := history.Open(context.Background(), db, history.WithOfflineAfter(time.Minute), history.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	// Migrating twice is a no-op.
	if _, err := history.Open(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	return h
}

func report(m map[string]float64) fleet.StatusReport { return fleet.StatusReport{Metrics: m} }

func TestContract(t *testing.T) {
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			for _, c := range contract {
				t.Run(c.name, func(t *testing.T) { c.fn(t, mk(t)) })
			}
		})
	}
}

var contract = []struct {
	name string
	fn   func(t *testing.T, db *sqldb.DB)
}{
	{"downsampling", testDownsampling},
	{"uptime with offline gaps", testUptimeGaps},
	{"sessions survive a restart", testRestart},
	{"prune bounds what is kept", testPrune},
}

func testDownsampling(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	c := &clock{t0.Add(time.Hour)}
	h := open(t, db, c)
	// Every 10 s for 3 minutes: cpu = seconds into the minute, memory fixed,
	// drift as the largest drift* metric, disk free from the facts.
	for s := 0; s < 180; s += 10 {
		at := t0.Add(time.Duration(s) * time.Second)
		rep := report(map[string]float64{"cpu_percent": float64(s % 60), "memory_bytes": 1 << 30, "drift_psi": 0.1, "drift_ks": 0.3})
		rep.Facts = &fleet.Facts{DiskFree: 5 << 30}
		h.Observe("dev-1", rep, at)
		if s == 90 {
			if err := h.Flush(ctx); err != nil { // a flush in the middle of a minute adds up
				t.Fatal(err)
			}
		}
	}
	h.Observe("dev-2", report(map[string]float64{"cpu_percent": 99}), t0)
	cases := []struct {
		name       string
		from, to   time.Time
		step       time.Duration
		wantRes    float64
		wantPoints []history.Point
	}{
		{"1-minute points", t0, t0.Add(3 * time.Minute), time.Minute, 60, []history.Point{
			{Time: t0, Avg: 25, Min: 0, Max: 50, N: 6},
			{Time: t0.Add(time.Minute), Avg: 25, Min: 0, Max: 50, N: 6},
			{Time: t0.Add(2 * time.Minute), Avg: 25, Min: 0, Max: 50, N: 6}}},
		{"2-minute steps merge minutes", t0, t0.Add(4 * time.Minute), 2 * time.Minute, 60, []history.Point{
			{Time: t0, Avg: 25, Min: 0, Max: 50, N: 12},
			{Time: t0.Add(2 * time.Minute), Avg: 25, Min: 0, Max: 50, N: 6}}},
		{"hour step reads hour points", t0, t0.Add(time.Hour), time.Hour, 3600, []history.Point{
			{Time: t0, Avg: 25, Min: 0, Max: 50, N: 18}}},
		{"range ends before the data", t0.Add(-time.Hour), t0, time.Minute, 60, []history.Point{}},
		// The dashboard asks up to now: a now in the first second of a
		// minute still shows the minute's point (it was left out 1 run in 60).
		{"range ends within a minute's first second", t0.Add(time.Minute), t0.Add(2*time.Minute + 500*time.Millisecond), time.Minute, 60, []history.Point{
			{Time: t0.Add(time.Minute), Avg: 25, Min: 0, Max: 50, N: 6},
			{Time: t0.Add(2 * time.Minute), Avg: 25, Min: 0, Max: 50, N: 6}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := h.Points(ctx, "dev-1", tc.from, tc.to, tc.step)
			if err != nil {
				t.Fatal(err)
			}
			if float64(m.Resolution) != tc.wantRes {
				t.Errorf("resolution %v, want %v", m.Resolution, tc.wantRes)
			}
			got := m.Series["cpu"]
			if len(got) != len(tc.wantPoints) {
				t.Fatalf("cpu points %+v, want %+v", got, tc.wantPoints)
			}
			for i := range got {
				if !got[i].Time.Equal(tc.wantPoints[i].Time) || got[i].Avg != tc.wantPoints[i].Avg || got[i].Min != tc.wantPoints[i].Min ||
					got[i].Max != tc.wantPoints[i].Max || got[i].N != tc.wantPoints[i].N {
					t.Errorf("cpu point %d = %+v, want %+v", i, got[i], tc.wantPoints[i])
				}
			}
		})
	}
	m, err := h.Points(ctx, "dev-1", t0, t0.Add(time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{"memory": 1 << 30, "drift": 0.3, "disk_free": 5 << 30} {
		if p := m.Series[series]; len(p) != 1 || p[0].Avg != want {
			t.Errorf("%s = %+v, want one point of %v", series, p, want)
		}
	}
	if p := m.Series["temperature"]; len(p) != 0 {
		t.Errorf("temperature was never reported but has %+v", p)
	}
	if _, err := h.Points(ctx, "dev-1", t0, t0, time.Minute); err == nil {
		t.Error("an empty range was accepted")
	}
}

func testUptimeGaps(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	c := &clock{t0.Add(30 * time.Minute)}
	h := open(t, db, c)
	// dev-1 reports every 30 s for 10 minutes, is silent for 10, reports
	// again until now. dev-2 appears half way and stays. dev-3 reported once,
	// long before the window.
	for s := 0; s <= 600; s += 30 {
		h.Observe("dev-1", report(nil), t0.Add(time.Duration(s)*time.Second))
	}
	for s := 1200; s <= 1800; s += 30 {
		h.Observe("dev-1", report(nil), t0.Add(time.Duration(s)*time.Second))
	}
	for s := 900; s <= 1800; s += 30 {
		h.Observe("dev-2", report(nil), t0.Add(time.Duration(s)*time.Second))
	}
	h.Observe("dev-3", report(nil), t0.Add(-24*time.Hour))

	rep, err := h.Uptime(ctx, "", 30*time.Minute, c.now, true)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]history.Uptime{}
	for _, u := range rep.Targets {
		by[u.Target] = u
	}
	for _, w := range []struct {
		target              string
		online              bool
		observed, onlineFor float64
		outages             int
	}{
		{"dev-1", true, 1800, 1200, 1},
		{"dev-2", true, 900, 900, 0}, // first seen in the window: observed from then
		{"dev-3", false, 1800, 0, 0},
	} {
		u := by[w.target]
		if u.Online != w.online || float64(u.Observed) != w.observed || float64(u.OnlineFor) != w.onlineFor || u.Outages != w.outages {
			t.Errorf("%s: %+v, want online=%v observed=%v online=%v outages=%d", w.target, u, w.online, w.observed, w.onlineFor, w.outages)
		}
	}
	if p := by["dev-1"].Percent; p != 66.67 {
		t.Errorf("dev-1 uptime %v%%, want 66.67%%", p)
	}
	tr := by["dev-1"].Transitions
	if len(tr) != 2 || tr[0].Online || !tr[0].Time.Equal(t0.Add(11*time.Minute)) || !tr[1].Online || !tr[1].Time.Equal(t0.Add(20*time.Minute)) {
		t.Errorf("dev-1 transitions %+v, want offline at +11m, online at +20m", tr)
	}
	if rep.Fleet.Percent != 46.67 || rep.Fleet.Outages != 1 { // (1200+900+0)/(1800+900+1800)
		t.Errorf("fleet %+v, want 46.67%% and 1 outage", rep.Fleet)
	}
	one, err := h.Uptime(ctx, "dev-1", 5*time.Minute, c.now, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Targets) != 1 || one.Targets[0].Percent != 100 || one.Targets[0].Transitions != nil {
		t.Errorf("dev-1 over 5m: %+v, want 100%% without transitions", one.Targets)
	}
	// Once dev-1 is silent for longer than offlineAfter it is offline.
	c.now = t0.Add(40 * time.Minute)
	rep, err = h.Uptime(ctx, "dev-1", 40*time.Minute, c.now, false)
	if err != nil {
		t.Fatal(err)
	}
	if u := rep.Targets[0]; u.Online || u.Outages != 2 || float64(u.OnlineFor) != 1200 {
		t.Errorf("dev-1 later: %+v, want offline, 2 outages, 1200 s online", u)
	}
}

func testRestart(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	c := &clock{t0.Add(10 * time.Minute)}
	h := open(t, db, c)
	for s := 0; s <= 300; s += 30 {
		h.Observe("dev-1", report(nil), t0.Add(time.Duration(s)*time.Second))
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// A new server (or replica) continues the session from 30 s later.
	h2 := open(t, db, c)
	for s := 330; s <= 600; s += 30 {
		h2.Observe("dev-1", report(nil), t0.Add(time.Duration(s)*time.Second))
	}
	rep, err := h2.Uptime(ctx, "dev-1", 10*time.Minute, c.now, true)
	if err != nil {
		t.Fatal(err)
	}
	if u := rep.Targets[0]; u.Percent != 100 || u.Outages != 0 || len(u.Transitions) != 0 {
		t.Errorf("after a restart: %+v, want one unbroken session", u)
	}
}

func testPrune(t *testing.T, db *sqldb.DB) {
	ctx := context.Background()
	c := &clock{t0}
	h := open(t, db, c)
	for _, age := range []time.Duration{100 * 24 * time.Hour, 50 * time.Hour, time.Hour} {
		h.Observe("dev-1", report(map[string]float64{"cpu_percent": 1}), t0.Add(-age))
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	count := func(res int) int {
		var n int
		if err := db.QueryRowContext(ctx, db.Rebind(`SELECT COUNT(*) FROM metric_points WHERE res = ?`), res).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(60); n != 1 {
		t.Errorf("%d minute points kept, want 1 (the one within 48 h)", n)
	}
	if n := count(3600); n != 2 {
		t.Errorf("%d hour points kept, want 2 (those within 90 days)", n)
	}
	m, err := h.Points(ctx, "dev-1", t0.Add(-60*time.Hour), t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Series["cpu"]) != 2 {
		t.Errorf("hour points over 60 h: %+v, want 2", m.Series["cpu"])
	}
}

func TestHandler(t *testing.T) {
	ctx := context.Background()
	c := &clock{t0.Add(10 * time.Minute)}
	h := open(t, openDB(t, filepath.Join(t.TempDir(), "cairn.db")), c)
	for s := 0; s <= 600; s += 30 {
		h.Observe("dev-1", report(map[string]float64{"temperature_c": 40}), t0.Add(time.Duration(s)*time.Second))
	}
	_ = ctx
	mux := http.NewServeMux()
	mux.Handle("GET "+history.PathMetrics, history.NewHandler(h))
	mux.Handle("GET "+history.PathUptime, history.NewHandler(h))
	get := func(path string, out any) int {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if out != nil && rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code
	}
	var m history.Metrics
	if code := get("/api/v1/targets/dev-1/metrics?from=10m&step=5m", &m); code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	if p := m.Series["temperature"]; m.Target != "dev-1" || len(p) != 2 || p[0].Avg != 40 {
		t.Errorf("metrics %+v", m)
	}
	var u history.UptimeReport
	if code := get("/api/v1/uptime?window=1d", &u); code != 200 || len(u.Targets) != 1 || u.Fleet.Percent != 100 {
		t.Errorf("uptime %d %+v", code, u)
	}
	for _, bad := range []string{"/api/v1/uptime?window=-3d", "/api/v1/uptime?window=often", "/api/v1/targets/dev-1/metrics?from=yesterday",
		"/api/v1/targets/dev-1/metrics?from=2026-11-30T12:00:00Z&to=2026-11-30T11:00:00Z", "/api/v1/targets/dev-1/metrics?from=3000d&step=1h"} {
		if code := get(bad, nil); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

func TestParseWindow(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", 7 * time.Hour, false}, {"30d", 30 * 24 * time.Hour, false}, {"0.5d", 12 * time.Hour, false}, {"90m", 90 * time.Minute, false},
		{"0d", 0, true}, {"-1h", 0, true}, {"d", 0, true}, {"1w", 0, true}, {"99999d", 0, true},
	} {
		got, err := history.ParseWindow(c.in, 7*time.Hour)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("ParseWindow(%q) = %v, %v; want %v, error %v", c.in, got, err, c.want, c.err)
		}
	}
}
