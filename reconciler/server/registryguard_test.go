package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRegistryGuard(t *testing.T) {
	s := &Server{cfg: Config{AdminToken: "adm", ReadToken: "ro"}}
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	guard := s.registryGuard(ok)
	for _, tc := range []struct {
		name, method, remote, bearer, basicPass string
		want                                    int
	}{
		{"pull from anywhere", http.MethodGet, "10.0.0.5:4000", "", "", http.StatusAccepted},
		{"head from anywhere", http.MethodHead, "10.0.0.5:4000", "", "", http.StatusAccepted},
		{"push from loopback", http.MethodPut, "127.0.0.1:4000", "", "", http.StatusAccepted},
		{"push from ::1", http.MethodPost, "[::1]:4000", "", "", http.StatusAccepted},
		{"push from afar without a token", http.MethodPut, "10.0.0.5:4000", "", "", http.StatusUnauthorized},
		{"delete from afar without a token", http.MethodDelete, "10.0.0.5:4000", "", "", http.StatusUnauthorized},
		{"push with the read-only token", http.MethodPut, "10.0.0.5:4000", "ro", "", http.StatusUnauthorized},
		{"push with the admin bearer token", http.MethodPut, "10.0.0.5:4000", "adm", "", http.StatusAccepted},
		{"push with the admin token as basic password", http.MethodPatch, "10.0.0.5:4000", "", "adm", http.StatusAccepted},
		{"push with a wrong basic password", http.MethodPatch, "10.0.0.5:4000", "", "nope", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/v2/models/x/blobs/uploads/", nil)
			r.RemoteAddr = tc.remote
			if tc.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			if tc.basicPass != "" {
				r.SetBasicAuth("cairn", tc.basicPass)
			}
			w := httptest.NewRecorder()
			guard.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%s %s from %s: %d, want %d", tc.method, r.URL.Path, tc.remote, w.Code, tc.want)
			}
		})
	}
}
