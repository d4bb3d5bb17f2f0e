package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/manifests"
	"github.com/cairn-dev/cairn/reconciler/dashboard"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/record"
	"github.com/cairn-dev/cairn/reconciler/rollout"
	"github.com/cairn-dev/cairn/reconciler/store"
)

type env struct {
	t    *testing.T
	st   *store.SQL
	hs   *httptest.Server
	dash *dashboard.Dashboard
}

// newEnv: a store with 12 targets (3 failed, 2 offline, 1 never reporting,
// 6 healthy), one release, and the dashboard over it.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqldb.Open(ctx, filepath.Join(t.TempDir(), "d.db"))
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
	now := time.Now()
	for i := range 12 {
		name := fmt.Sprintf("dev-%02d", i)
		env := "prod"
		if i%2 == 1 {
			env = "lab"
		}
		if err := st.EnrollTarget(ctx, store.Target{ID: name, Name: name, Labels: map[string]string{"env": env}, CredHash: name}); err != nil {
			t.Fatal(err)
		}
		phase, at := fleet.PhaseHealthy, now
		switch {
		case i < 3:
			phase = fleet.PhaseFailed
		case i < 5:
			at = now.Add(-time.Hour)
		case i == 5:
			continue
		}
		rep := fleet.StatusReport{Releases: []fleet.ReleaseStatus{{Release: "demo", Phase: phase, Digest: "sha256:" + strings.Repeat("a", 64)}},
			Metrics: map[string]float64{"cpu_percent": float64(10 + i)}, Log: []fleet.LogEntry{{Release: "demo", Phase: phase, Message: "installed on " + name}}}
		if err := st.PutStatus(ctx, name, rep, at); err != nil {
			t.Fatal(err)
		}
		h.Observe(name, rep, at)
	}
	wave1 := manifests.Gate{Metric: "cpu_percent", Max: ptr(50.0), Aggregate: manifests.AggregateMax}
	cols, err := record.Encode(record.Release{Name: "demo",
		Admitted: &record.Admitted{Commit: "c0ffee",
			Release: manifests.Release{Metadata: manifests.ObjectMeta{Name: "demo"}},
			Model:   manifests.Model{Metadata: manifests.ObjectMeta{Name: "m"}, Spec: manifests.ModelSpec{Artifact: "reg.example/m@sha256:" + strings.Repeat("a", 64)}},
			Profiles: []manifests.DeviceProfile{{Metadata: manifests.ObjectMeta{Name: "edge"},
				Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
			Policy: manifests.RolloutPolicy{Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{{Percent: 50}, {Percent: 100}},
				Gates: []manifests.Gate{wave1}}}},
		Rollout: rollout.State{Release: "demo", Phase: rollout.PhaseProgressing, Wave: 0,
			Gates: &rollout.GateWindow{Wave: 0, Stats: map[string]rollout.GateStats{"cpu_percent": {Count: 2, Sum: 24, Max: 14, Min: 10, Recent: []float64{10, 14}}}}},
		Status: fleet.ReleaseInfo{ReleaseState: fleet.ReleaseState{Name: "demo", Digest: "sha256:" + strings.Repeat("a", 64), Phase: "Progressing"}, Targets: 6, Waves: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutRelease(ctx, store.Release{Name: "demo", Commit: "c0ffee", Spec: cols.Spec, State: cols.State, Status: cols.Status}); err != nil {
		t.Fatal(err)
	}
	d, err := dashboard.New(dashboard.Config{Store: st, History: h, AdminToken: "admin-tok", ReadToken: "read-tok", OfflineAfter: time.Minute, PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d)
	t.Cleanup(hs.Close)
	return &env{t: t, st: st, hs: hs, dash: d}
}

// client returns a browser-like client: a cookie jar, no redirects followed.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) post(c *http.Client, path string, form url.Values, hdr map[string]string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.hs.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func (e *env) get(c *http.Client, path string) (int, string) {
	e.t.Helper()
	resp, err := c.Get(e.hs.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *env) login(tok string) *http.Client {
	e.t.Helper()
	c := e.client()
	resp := e.post(c, "/login", url.Values{"token": {tok}}, map[string]string{"Origin": e.hs.URL})
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("login with %s: %d", tok, resp.StatusCode)
	}
	return c
}

func TestLogin(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	if code, _ := e.get(c, "/"); code != http.StatusSeeOther {
		t.Errorf("fleet without a session: %d, want a redirect to the login form", code)
	}
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}
	for _, tc := range []struct {
		name string
		tok  string
		hdr  map[string]string
		want int
	}{
		{"wrong token", "nope", same, http.StatusUnauthorized},
		{"no origin at all", "admin-tok", nil, http.StatusForbidden},
		{"cross-site", "admin-tok", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": e.hs.URL}, http.StatusForbidden},
		{"other origin", "admin-tok", map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
		{"same origin", "admin-tok", same, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.post(e.client(), "/login", url.Values{"token": {tc.tok}}, tc.hdr)
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusSeeOther {
				sc := resp.Header.Get("Set-Cookie")
				for _, attr := range []string{"HttpOnly", "SameSite=Strict", "Path=/"} {
					if !strings.Contains(sc, attr) {
						t.Errorf("session cookie %q lacks %s", sc, attr)
					}
				}
				if strings.Contains(sc, "admin-tok") || strings.Contains(resp.Header.Get("Location"), "tok") {
					t.Errorf("the token leaked into the cookie or the redirect: %q %q", sc, resp.Header.Get("Location"))
				}
			}
		})
	}
	// A forged or altered cookie is no session.
	u, _ := url.Parse(e.hs.URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "cairn_session", Value: "admin.99999999999.AAAA.forged"}})
	if code, _ := e.get(c, "/"); code != http.StatusSeeOther {
		t.Errorf("forged cookie: %d, want a redirect to login", code)
	}
	// Logout ends the session.
	a := e.login("admin-tok")
	if code, _ := e.get(a, "/"); code != http.StatusOK {
		t.Fatalf("fleet after login: %d", code)
	}
	e.post(a, "/logout", nil, same)
	if code, _ := e.get(a, "/"); code != http.StatusSeeOther {
		t.Errorf("fleet after logout: %d, want a redirect", code)
	}
}

func TestFleetPage(t *testing.T) {
	e := newEnv(t)
	c := e.login("read-tok")
	_, body := e.get(c, "/")
	for _, want := range []string{`id="count-total">12<`, `id="count-online">9<`, `id="count-offline">3<`, `id="count-failed">3<`, `id="count-never">1<`, `id="matching">12<`} {
		if !strings.Contains(body, want) {
			t.Errorf("fleet page lacks %s", want)
		}
	}
	// Needs attention first: the failed ones lead, healthy ones are on later pages.
	if i, j := strings.Index(body, "dev-00"), strings.Index(body, "dev-03"); i < 0 || j < 0 || i > j {
		t.Errorf("failed dev-00 should come before offline dev-03 on page 1")
	}
	if strings.Contains(body, "dev-11") {
		t.Error("healthy dev-11 is on page 1 of 5 rows")
	}
	for _, tc := range []struct {
		query    string
		matching int
		has      string
	}{
		{"?q=dev-07", 1, "dev-07"},
		{"?label=env%3Dlab", 6, "dev-01"},
		{"?profile=edge", 6, "dev-00"},
		{"?phase=offline", 3, "dev-05"},
		{"?phase=failed", 3, "dev-02"},
		{"?page=3", 12, "dev-11"},
	} {
		_, body := e.get(c, "/"+tc.query)
		if !strings.Contains(body, fmt.Sprintf(`id="matching">%d<`, tc.matching)) || !strings.Contains(body, tc.has) {
			t.Errorf("%s: want %d matching with %s", tc.query, tc.matching, tc.has)
		}
	}
	code, body := e.get(c, "/targets/dev-07")
	if code != 200 || !strings.Contains(body, "installed on dev-07") || !strings.Contains(body, `class="spark"`) {
		t.Errorf("target page: %d, want its deployment log and a sparkline", code)
	}
	if code, _ := e.get(c, "/targets/nope"); code != http.StatusNotFound {
		t.Errorf("unknown target: %d", code)
	}
	code, body = e.get(c, "/releases/demo")
	if code != 200 || !strings.Contains(body, `class="wavebar"`) || strings.Contains(body, `id="action-pause"`) {
		t.Errorf("release page for a read-only session: %d; want a wave bar and no actions", code)
	}
	for _, p := range []string{"/releases", "/events?release=demo", "/lineage"} {
		if code, _ := e.get(c, p); code != 200 {
			t.Errorf("%s: %d", p, code)
		}
	}
}

func TestRolloutActions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	same := map[string]string{"Origin": e.hs.URL}
	form := url.Values{"action": {"pause"}, "confirm": {"yes"}}
	r := e.login("read-tok")
	if resp := e.post(r, "/releases/demo/action", form, same); resp.StatusCode != http.StatusForbidden {
		t.Errorf("read-only pause: %d, want 403", resp.StatusCode)
	}
	a := e.login("admin-tok")
	code, body := e.get(a, "/releases/demo/confirm?action=pause")
	if code != 200 || !strings.Contains(body, `name="confirm" value="yes"`) {
		t.Errorf("confirm page: %d", code)
	}
	if resp := e.post(a, "/releases/demo/action", form, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("pause without an origin: %d, want 403", resp.StatusCode)
	}
	if resp := e.post(a, "/releases/demo/action", url.Values{"action": {"pause"}}, same); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unconfirmed pause: %d, want 400", resp.StatusCode)
	}
	if cmds, _ := e.st.TakeCommands(ctx); len(cmds) != 0 {
		t.Fatalf("refused requests queued %+v", cmds)
	}
	if resp := e.post(a, "/releases/demo/action", form, same); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("pause: %d, want 303", resp.StatusCode)
	}
	cmds, err := e.st.TakeCommands(ctx)
	if err != nil || len(cmds) != 1 || cmds[0].Command != "pause" || cmds[0].Release != "demo" {
		t.Errorf("queued %+v, %v; want one pause of demo", cmds, err)
	}
}

func TestLive(t *testing.T) {
	e := newEnv(t)
	c := e.login("read-tok")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.hs.URL+"/live", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	buf := make([]byte, 64)
	resp.Body.Read(buf) // the retry line
	// A status report makes the next refresh announce a change.
	if err := e.st.PutStatus(ctx, "dev-05", fleet.StatusReport{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := e.dash.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for !strings.Contains(got.String(), "event: change") {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("stream ended before a change: %v (%q)", err, got.String())
		}
		got.Write(buf[:n])
	}
}

// A target waiting for an admin's acceptance is counted and filtered as
// pending.
func TestFleetPendingAcceptance(t *testing.T) {
	e := newEnv(t)
	if err := e.st.EnrollTarget(context.Background(), store.Target{ID: "dev-new", Name: "dev-new", CredHash: "h", State: store.StatePending}); err != nil {
		t.Fatal(err)
	}
	if err := e.dash.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	c := e.login("read-tok")
	_, body := e.get(c, "/")
	if !strings.Contains(body, `id="count-pending">1<`) {
		t.Fatalf("fleet page lacks one pending target:\n%s", body)
	}
	_, body = e.get(c, "/?phase=pending")
	if !strings.Contains(body, "dev-new") || !strings.Contains(body, `id="matching">1<`) {
		t.Fatalf("phase=pending does not list dev-new alone:\n%s", body)
	}
}

func ptr[T any](v T) *T { return &v }

// TestReleaseWaves: the release page draws one bar per wave with that
// wave's targets by state, in the engine's wave order, and each gate's
// aggregate over the bake window against its threshold.
func TestReleaseWaves(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	digest := "sha256:" + strings.Repeat("a", 64)
	// The engine's split of the six env=prod targets into 50% + 100%.
	prod := []string{"dev-00", "dev-02", "dev-04", "dev-06", "dev-08", "dev-10"}
	waves := rollout.AssignWaves("demo", []manifests.Wave{{Percent: 50}, {Percent: 100}}, prod)
	var ds []store.Desired
	for _, id := range waves[0] {
		body, _ := json.Marshal(fleet.DesiredState{Target: id, Models: []fleet.DesiredModel{{Release: "demo", Digest: digest}}})
		ds = append(ds, store.Desired{Target: id, Body: body})
	}
	if _, err := e.st.PutDesired(ctx, ds); err != nil {
		t.Fatal(err)
	}
	if err := e.dash.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := [2]string{}
	for i, members := range waves {
		var healthy, failed, pending, waiting int
		for _, id := range members {
			switch {
			case i == 1:
				waiting++
			case id == "dev-00" || id == "dev-02":
				failed++
			case id == "dev-04" || id == "dev-06" || id == "dev-08" || id == "dev-10":
				healthy++
			default:
				pending++
			}
		}
		pct := []int{50, 100}[i]
		want[i] = fmt.Sprintf(`aria-label="wave %d (%d%%, %d targets): %d healthy, 0 installing, 0 downloading, %d pending, %d failed, %d waiting"`, i+1, pct, len(members), healthy, pending, failed, waiting)
	}
	_, body := e.get(e.login("read-tok"), "/releases/demo")
	for i, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("wave %d bar: want %s in the page", i+1, w)
		}
	}
	if !strings.Contains(body, `id="wave">1 of 2<`) {
		t.Error(`want "1 of 2" as the current wave`)
	}
	if !strings.Contains(body, `id="wave-1"`) || !strings.Contains(body, `id="wave-2"`) {
		t.Error("want one bar per wave")
	}
	// cpu_percent max over the window is 14 ≤ 50 over 2 samples: pass.
	if !strings.Contains(body, "<td>max 14</td><td>2</td>") || !strings.Contains(body, `class="gate-pass"`) {
		i := strings.Index(body, `id="gates"`)
		t.Errorf("gate row: want the window's max 14 over 2 samples, passing; got %s", body[max(i, 0):min(max(i, 0)+600, len(body))])
	}
}
