package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/fleet"
)

// TestClientCertIdentity: a verified client certificate naming target X
// (CommonName or DNS name) enrolls X without a token and authenticates its
// requests alone; it never stands for Y. The TLS layer's verification is
// given (VerifiedChains); e2e TestTLS runs it through a real handshake.
func TestClientCertIdentity(t *testing.T) {
	s, _ := newTestServer(t)
	h := s.Handler()
	cert := func(cn string, dns ...string) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: cn}, DNSNames: dns}}}}
	}
	do := func(cs *tls.ConnectionState, method, path, bearer, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.TLS = cs
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, strings.TrimSpace(w.Body.String())
	}
	// dev-y enrolls with the fleet token, as without a certificate.
	code, body := do(nil, http.MethodPost, "/api/v1/enroll", "", `{"token":"e","name":"dev-y"}`)
	var ey fleet.EnrollResponse
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &ey) != nil {
		t.Fatalf("enroll dev-y with the token: %d %s", code, body)
	}
	// Whether an unverified certificate (VerifiedChains empty) counts.
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "dev-x"}}}}

	for _, tc := range []struct {
		name         string
		cs           *tls.ConnectionState
		method, path string
		bearer, body string
		want         int
	}{
		{"a certificate for dev-x enrolls dev-x without a token", cert("dev-x"), "POST", "/api/v1/enroll", "", `{"name":"dev-x"}`, http.StatusCreated},
		{"and reads dev-x's desired state alone", cert("dev-x"), "GET", "/api/v1/targets/dev-x/desired?wait=0s", "", "", http.StatusOK},
		{"a DNS name counts as the CommonName does", cert("host-17", "dev-x"), "GET", "/api/v1/targets/dev-x/desired?wait=0s", "", "", http.StatusOK},
		{"never dev-y's desired state", cert("dev-x"), "GET", "/api/v1/targets/dev-y/desired?wait=0s", "", "", http.StatusForbidden},
		{"never dev-y's status", cert("dev-x"), "POST", "/api/v1/targets/dev-y/status", "", `{}`, http.StatusForbidden},
		{"never dev-y's enrollment", cert("dev-x"), "POST", "/api/v1/enroll", "", `{"name":"dev-y"}`, http.StatusUnauthorized},
		{"nor a new name's", cert("dev-x"), "POST", "/api/v1/enroll", "", `{"name":"dev-z"}`, http.StatusUnauthorized},
		{"a certificate for a target not enrolled", cert("dev-w"), "GET", "/api/v1/targets/dev-w/desired?wait=0s", "", "", http.StatusUnauthorized},
		{"an unverified certificate is nothing", unverified, "GET", "/api/v1/targets/dev-x/desired?wait=0s", "", "", http.StatusUnauthorized},
		{"dev-y's own credential still authenticates dev-y", cert("dev-x"), "GET", "/api/v1/targets/dev-y/desired?wait=0s", ey.Credential, "", http.StatusOK},
	} {
		if code, body := do(tc.cs, tc.method, tc.path, tc.bearer, tc.body); code != tc.want {
			t.Errorf("%s: %s %s: %d %s, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
		}
	}
}
