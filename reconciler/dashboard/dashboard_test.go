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
	spec, _ := json.Marshal(map[string]any{"commit": "c0ffee", "profiles": []manifests.DeviceProfile{{Metadata: manifests.ObjectMeta{Name: "edge"},
		Spec: manifests.DeviceProfileSpec{Selector: manifests.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}}}},
		"policy": manifests.RolloutPolicy{Spec: manifests.RolloutPolicySpec{Waves: []manifests.Wave{{Percent: 50}, {Percent: 100}}}}})
	status, _ := json.Marshal(fleet.ReleaseInfo{ReleaseState: fleet.ReleaseState{Name: "demo", Digest: "sha256:" + strings.Repeat("a", 64), Phase: "Progressing"}, Targets: 6, Waves: 2})
	if err := st.PutRelease(ctx, store.Release{Name: "demo", Commit: "c0ffee", Spec: spec, State: []byte(`{}`), Status: status}); err != nil {
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
