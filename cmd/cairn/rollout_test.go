package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRolloutVerb(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
			return
		}
		got = append(got, r.Method+" "+r.URL.Path)
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args    []string
		wantOut string
		wantErr string
	}{
		{[]string{"rollout", "pause", "demo", "--server", srv.URL, "--token", "tok"}, "rollout demo: pause requested", ""},
		{[]string{"rollout", "retry", "demo", "--server", srv.URL, "--token", "tok"}, "rollout demo: retry requested", ""},
		{[]string{"rollout", "abort", "demo", "--server", srv.URL, "--token", "nope"}, "", "401"},
		{[]string{"rollout", "resume", "demo", "--server", srv.URL, "--token", ""}, "", "admin token is required"},
	} {
		t.Run(strings.Join(tc.args[:2], " "), func(t *testing.T) {
			var out bytes.Buffer
			cmd := newRootCmd()
			cmd.SetOut(&out)
			cmd.SetArgs(tc.args)
			err := cmd.Execute()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("out %q err %v", out.String(), err)
			}
		})
	}
	if want := "POST /api/v1/releases/demo/rollout/pause"; len(got) == 0 || got[0] != want {
		t.Fatalf("requests %v, want %s first", got, want)
	}
}
