package server

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestBucketAsLimiter: a bucket allows what rate.Limiter's Allow does, at
// the same times, for a few rates and bursts.
func TestBucketAsLimiter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		r     rate.Limit
		burst int
	}{{1, 10}, {5, 20}, {0.2, 1}, {1000, 1000}, {1, 0}, {rate.Inf, 0}} {
		t0 := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		lim := rate.NewLimiter(c.r, c.burst)
		var b bucket
		now := time.Duration(1)
		for i := range 2000 {
			now += time.Duration(rng.Int64N(int64(400 * time.Millisecond)))
			if i%100 == 0 {
				now += 30 * time.Second // a quiet spell: full again
			}
			want := lim.AllowN(t0.Add(now), 1)
			if got := b.take(int64(now), c.r, c.burst); got != want {
				t.Fatalf("rate %v burst %d, take %d at %s: %v, rate.Limiter %v", c.r, c.burst, i, now, got, want)
			}
		}
	}
}

// TestFailedLoginKeepsBuckets: a wrong bearer token for a target accepted
// with a certificate alone (no credential hash) is refused and leaves the
// target's status and poll buckets as they were; so does forgetting a
// target (deleted, rejected), which drops only its credential.
func TestFailedLoginKeepsBuckets(t *testing.T) {
	s, _ := newTestServer(t)
	s.cfg.StatusRate, s.cfg.PollRate = 0.001, 0.001 // no refill while the test runs
	h := s.Handler()
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
	cert := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: "dev-x"}}}}}
	if code, body := do(cert, http.MethodPost, "/api/v1/enroll", "", `{"name":"dev-x"}`); code != http.StatusCreated {
		t.Fatalf("enroll dev-x with its certificate: %d %s", code, body)
	}
	empty := func() {
		t.Helper()
		if _, ok := s.allowStatus("dev-x"); ok {
			t.Fatal("status bucket refilled")
		}
	}
	// Empty the status bucket and the poll bucket.
	for s.allowPoll("dev-x") {
	}
	for {
		if _, ok := s.allowStatus("dev-x"); !ok {
			break
		}
	}
	for range 3 {
		if code, body := do(nil, http.MethodGet, "/api/v1/targets/dev-x/desired?wait=0s", "wrong", ""); code != http.StatusUnauthorized {
			t.Fatalf("wrong token for dev-x: %d %s", code, body)
		}
		empty()
		if s.allowPoll("dev-x") {
			t.Fatal("poll bucket refilled by a failed login")
		}
	}
	s.forget("dev-x")
	empty()
}
