package server

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRegistryGuard(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	for _, tc := range []struct {
		name, pull, method, remote, bearer, basicPass string
		want                                          int
	}{
		{"pull from anywhere", "", http.MethodGet, "10.0.0.5:4000", "", "", http.StatusAccepted},
		{"head from anywhere", "anonymous", http.MethodHead, "10.0.0.5:4000", "", "", http.StatusAccepted},
		{"push from loopback without a token", "", http.MethodPut, "127.0.0.1:4000", "", "", http.StatusUnauthorized},
		{"push from ::1 without a token", "", http.MethodPost, "[::1]:4000", "", "", http.StatusUnauthorized},
		{"push from afar without a token", "", http.MethodPut, "10.0.0.5:4000", "", "", http.StatusUnauthorized},
		{"delete from afar without a token", "", http.MethodDelete, "10.0.0.5:4000", "", "", http.StatusUnauthorized},
		{"push with the read-only token", "", http.MethodPut, "10.0.0.5:4000", "ro", "", http.StatusForbidden},
		{"push with a target credential", "", http.MethodPut, "10.0.0.5:4000", "tcred", "", http.StatusForbidden},
		{"push with the admin bearer token", "", http.MethodPut, "10.0.0.5:4000", "adm", "", http.StatusAccepted},
		{"push with the admin token as basic password", "", http.MethodPatch, "10.0.0.5:4000", "", "adm", http.StatusAccepted},
		{"push with a wrong basic password", "", http.MethodPatch, "127.0.0.1:4000", "", "nope", http.StatusUnauthorized},
		{"token pull without a token", "token", http.MethodGet, "127.0.0.1:4000", "", "", http.StatusUnauthorized},
		{"token pull with the read-only token", "token", http.MethodGet, "10.0.0.5:4000", "", "ro", http.StatusAccepted},
		{"token pull with a target credential", "token", http.MethodGet, "10.0.0.5:4000", "tcred", "", http.StatusAccepted},
		{"token pull with a wrong token", "token", http.MethodHead, "10.0.0.5:4000", "nope", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{AdminToken: "adm", ReadToken: "ro", RegistryPull: tc.pull},
				byHash: map[[sha256.Size]byte]*fleetTarget{sha256.Sum256([]byte("tcred")): {id: "t1", cred: true}}}
			r := httptest.NewRequest(tc.method, "/v2/models/x/blobs/uploads/", nil)
			r.RemoteAddr = tc.remote
			if tc.bearer != "" {
				r.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			if tc.basicPass != "" {
				r.SetBasicAuth("anyone", tc.basicPass)
			}
			w := httptest.NewRecorder()
			s.registryGuard(ok).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("%s %s from %s: %d, want %d", tc.method, r.URL.Path, tc.remote, w.Code, tc.want)
			}
			if w.Code == http.StatusAccepted {
				return
			}
			if w.Code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 || body.Errors[0].Code == "" || body.Errors[0].Message == "" {
				t.Errorf("not an OCI error body: %q (%v)", w.Body.String(), err)
			}
		})
	}
}
