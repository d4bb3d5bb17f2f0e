package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

func TestWantSet(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    want
		wantErr bool
	}{
		{"rel=Succeeded@sha256:ab", want{"rel", "Succeeded", "sha256:ab"}, false},
		{"rel=RolledBack", want{"rel", "RolledBack", ""}, false},
		{"rel", want{}, true},
		{"=Succeeded", want{}, true},
		{"rel=", want{}, true},
	} {
		var ws wants
		err := ws.Set(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if err == nil && ws[0] != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.in, ws[0], tc.want)
		}
	}
}

// fakeServer serves releases that progress one step per request.
func fakeServer(t *testing.T, phases []string) string {
	t.Helper()
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/releases", func(w http.ResponseWriter, r *http.Request) {
		i := min(int(n.Add(1))-1, len(phases)-1)
		json.NewEncoder(w).Encode([]fleet.ReleaseInfo{{ReleaseState: fleet.ReleaseState{Name: "r", Phase: phases[i], Digest: "sha256:aa"}, Waves: 2}})
	})
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]fleet.Event{})
	})
	mux.HandleFunc("GET /api/v1/targets", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]fleet.TargetInfo{{Name: "d1", Releases: []fleet.ReleaseStatus{{Release: "r", Digest: "sha256:aa"}}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func tokenFile(t *testing.T) string {
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte("tok\n"), 0o600)
	return f
}

func TestRunWaitsForPhase(t *testing.T) {
	url := fakeServer(t, []string{"Progressing", "Progressing", "Succeeded"})
	if err := run(http.DefaultClient, url, tokenFile(t), 10*time.Second, wants{{"r", "Succeeded", "sha256:aa"}}, "sha256:aa"); err != nil {
		t.Fatal(err)
	}
}

func TestRunFailsOnOtherFinalPhase(t *testing.T) {
	url := fakeServer(t, []string{"Progressing", "RolledBack"})
	err := run(http.DefaultClient, url, tokenFile(t), 10*time.Second, wants{{"r", "Succeeded", "sha256:aa"}}, "")
	if err == nil || !strings.Contains(err.Error(), "ended RolledBack") {
		t.Fatalf("err = %v, want ended RolledBack", err)
	}
}
