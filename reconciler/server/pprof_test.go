package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

// TestPprofAdminOnly: the runtime profiles answer the admin token only; the
// read-only token gets 403, a target's credential, no token or a wrong one
// 401.
func TestPprofAdminOnly(t *testing.T) {
	_, hs := newTestServer(t)
	er, err := fleet.NewClient(hs.URL).Enroll(context.Background(), fleet.EnrollRequest{Token: "e", Name: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", hs.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"} {
		for token, want := range map[string]int{"r": http.StatusForbidden, er.Credential: http.StatusUnauthorized, "": http.StatusUnauthorized, "wrong": http.StatusUnauthorized} {
			if code, _ := get(path, token); code != want {
				t.Errorf("GET %s with token %q = %d, want %d", path, token, code, want)
			}
		}
	}
	if code, body := get("/debug/pprof/", "a"); code != http.StatusOK || !strings.Contains(body, "heap") {
		t.Errorf("index with the admin token = %d %.200q", code, body)
	}
	if code, body := get("/debug/pprof/goroutine?debug=1", "a"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile with the admin token = %d %.200q", code, body)
	}
	if code, body := get("/debug/pprof/heap", "a"); code != http.StatusOK || len(body) == 0 {
		t.Errorf("heap profile with the admin token = %d, %d bytes", code, len(body))
	}
}
