package reconciler

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// TestCrossOriginBrowserWritesRefused is the cross-origin probe of issue
// 14 against a real cairn serve: a page of another origin (another port of
// localhost is same-site, so SameSite=Strict cookies go along) makes the
// browser POST text/plain, which needs no preflight, to the dashboard's
// actions, login and logout, the webhook, enrollment and the admin API;
// every one gets 403 and changes nothing. The same requests from the
// dashboard's own pages, and bearer-token clients sending no Origin (the
// CLI, agents, Git hosts), still work.
func TestCrossOriginBrowserWritesRefused(t *testing.T) {
	ctx := context.Background()
	gitURL, work := gitServer(t)
	commitPush(t, work, manifestsFor(1), "v1")
	base := startServe(t, Config{Repo: gitURL, Interval: Duration(time.Hour), EnrollToken: "enroll-secret", AdminToken: "admin-secret"})
	admin := fleet.NewAdminClient(base, "admin-secret")
	waitAdmitted(t, admin, "r")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	post := func(path, body string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "text/plain")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}

	// A same-origin login opens an admin session.
	resp := post("/login", "token=admin-secret", map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": base})
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("same-origin login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	session := resp.Cookies()[0]
	cookie := session.Name + "=" + session.Value

	evil := "http://localhost:1" // another port: same site, other origin
	crossOrigin := []map[string]string{
		{"Origin": evil},
		{"Origin": evil, "Sec-Fetch-Site": "same-site"},
		{"Origin": "null", "Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "cross-site"},
	}
	writes := []struct{ path, body string }{
		{"/releases/r/action", "action=pause&confirm=yes"},
		{"/login", "token=admin-secret"},
		{"/logout", ""},
		{"/hooks/git", `{"ref":"refs/heads/main"}`}, // unsigned, from loopback: accepted from a tool
		{"/api/v1/enroll", `{"token":"enroll-secret","name":"csrf"}`},
		{"/api/v1/releases/r/rollout/pause", ""},
	}
	for _, w := range writes {
		for _, h := range crossOrigin {
			hdr := map[string]string{"Cookie": cookie, "Authorization": "Bearer admin-secret"}
			for k, v := range h {
				hdr[k] = v
			}
			if resp := post(w.path, w.body, hdr); resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s text/plain with %v: %d, want 403", w.path, h, resp.StatusCode)
			}
		}
	}
	if ts, err := admin.Targets(ctx); err != nil || len(ts) != 0 {
		t.Fatalf("targets after cross-origin enrollments = %+v, %v", ts, err)
	}
	// A pause reaches the release as an event (paused, or ignored when
	// there is nothing to pause); none came of the refused requests.
	pauses := func() int {
		evs, err := admin.Events(ctx, fleet.EventFilter{Release: "r"})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range evs {
			if strings.Contains(strings.ToLower(e.Type+" "+e.Message), "pause") {
				n++
			}
		}
		return n
	}
	time.Sleep(300 * time.Millisecond) // a pass or two
	if n := pauses(); n != 0 {
		t.Fatalf("%d pause events after cross-origin requests only", n)
	}

	// The dashboard's own form still acts, and tools without Origin still work.
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Sec-Fetch-Site": "same-origin"}
	if resp := post("/releases/r/action", url.Values{"action": {"pause"}, "confirm": {"yes"}}.Encode(), form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("same-origin dashboard action: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(10 * time.Second); pauses() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the same-origin pause left no event")
		}
	}
	if err := admin.RolloutAction(ctx, "r", "resume"); err != nil {
		t.Fatalf("bearer-token rollout action without Origin: %v", err)
	}
	if _, err := fleet.NewClient(base).Enroll(ctx, fleet.EnrollRequest{Token: "enroll-secret", Name: "dev-a", Facts: fleet.Facts{Arch: "amd64", OS: "linux"}}); err != nil {
		t.Fatalf("agent enrollment without Origin: %v", err)
	}
	if resp := post("/hooks/git", `{"ref":"refs/heads/main"}`, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("unsigned loopback webhook without Origin: %d, want 202", resp.StatusCode)
	}
}

// waitAdmitted waits until release name is admitted.
func waitAdmitted(t *testing.T, admin *fleet.AdminClient, name string) *fleet.ReleaseInfo {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if rel, err := admin.Release(context.Background(), name); err == nil && rel.Digest != "" {
			return rel
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("release %s not admitted within 15s", name)
	return nil
}
