package server

// Authentication of requests: admin and read-only tokens, target
// credentials (cached by hash, targets.go), client certificates naming a
// target.

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/time/rate"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/store"
)

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func tokenEqual(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// HashCredential is how the store keeps a target credential: hex SHA-256.
// Credentials are 32 random bytes, so a fast hash is enough.
func HashCredential(cred string) string {
	h := sha256.Sum256([]byte(cred))
	return hex.EncodeToString(h[:])
}

// NewToken returns a random 32-byte token, base64url-encoded.
func NewToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// read wraps a status API handler: admin or read-only token.
func (s *Server) read(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authBlocked(r) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many failed attempts from %s", peerIP(r))
			return
		}
		t := bearer(r)
		if !tokenEqual(t, s.cfg.AdminToken) && !tokenEqual(t, s.cfg.ReadToken) {
			s.authFailed(r)
			writeError(w, http.StatusUnauthorized, "an admin or read-only token is required")
			return
		}
		f(w, r)
	}
}

// admin wraps an action handler: admin token only.
func (s *Server) admin(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.authBlocked(r) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too many failed attempts from %s", peerIP(r))
			return
		}
		t := bearer(r)
		if tokenEqual(t, s.cfg.AdminToken) {
			f(w, r)
			return
		}
		if tokenEqual(t, s.cfg.ReadToken) {
			writeError(w, http.StatusForbidden, "the read-only token cannot act")
			return
		}
		s.authFailed(r)
		writeError(w, http.StatusUnauthorized, "an admin token is required")
	}
}

// authTarget checks the request's credential against target id: 401 for
// no or an unknown credential, 403 for another target's or one pending an
// admin's acceptance (code "pending").
func (s *Server) authTarget(w http.ResponseWriter, r *http.Request, id string) bool {
	if s.authBlocked(r) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too many failed attempts from %s", peerIP(r))
		return false
	}
	cred := bearer(r)
	if names := certNames(r); slices.Contains(names, id) {
		return s.authCert(w, r, id)
	} else if cred == "" && len(names) > 0 {
		// A certificate for X is never a credential of Y.
		s.authFailed(r)
		writeError(w, http.StatusForbidden, "the client certificate names %s, not target %s", strings.Join(names, ", "), id)
		return false
	}
	if cred == "" {
		s.authFailed(r)
		writeError(w, http.StatusUnauthorized, "a target credential is required")
		return false
	}
	sum := sha256.Sum256([]byte(cred))
	s.mu.Lock()
	var want [sha256.Size]byte
	known := false
	if t := s.known[id]; t != nil && t.cred {
		want, known = t.hash, true
	}
	var owner string
	if o := s.byHash[sum]; o != nil {
		owner = o.id
	}
	s.mu.Unlock()
	if known && subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
		return true
	}
	h := hex.EncodeToString(sum[:]) // as the store keeps it (HashCredential)
	// Not cached, or changed: accepted, enrolled again or deleted through an
	// admin or another replica; the store is the truth.
	t, err := s.cfg.Store.Target(r.Context(), id)
	switch {
	case err == nil && t.State == store.StateAccepted && t.CredHash != "":
		s.remember(t.ID, t.CredHash)
		if subtle.ConstantTimeCompare([]byte(h), []byte(t.CredHash)) == 1 {
			return true
		}
	case err == nil || errors.Is(err, store.ErrNotFound):
		// Forgotten only when the store changed what was cached (no
		// longer accepted with a credential): a wrong token for a
		// certificate-only target changes nothing.
		if known {
			s.forget(id)
		}
	default:
		writeError(w, http.StatusServiceUnavailable, "look up target: %v", err)
		return false
	}
	if err == nil && t.PendingHash != "" && subtle.ConstantTimeCompare([]byte(h), []byte(t.PendingHash)) == 1 {
		writeJSON(w, http.StatusForbidden, fleet.ErrorBody{Error: "target " + id + ": credential pending an admin's acceptance (cairn target accept " + id + ")", Code: fleet.CodePending})
		return false
	}
	s.authFailed(r)
	if owner != "" && owner != id {
		writeError(w, http.StatusForbidden, "this credential belongs to another target")
		return false
	}
	writeError(w, http.StatusUnauthorized, "unknown credential for target %s", id)
	return false
}

// authCert authenticates a request whose verified client certificate
// names target id: the target must be accepted (enrolled, with the
// certificate or a token, and not rejected or pending).
func (s *Server) authCert(w http.ResponseWriter, r *http.Request, id string) bool {
	s.mu.Lock()
	ft := s.known[id]
	accepted := ft != nil && ft.cred // as for credentials: cached while accepted
	s.mu.Unlock()
	if accepted {
		return true
	}
	t, err := s.cfg.Store.Target(r.Context(), id)
	switch {
	case err == nil && t.State == store.StateAccepted:
		if t.CredHash != "" {
			s.remember(t.ID, t.CredHash)
		}
		return true
	case err == nil && t.State == store.StatePending:
		writeJSON(w, http.StatusForbidden, fleet.ErrorBody{Error: "target " + id + ": pending an admin's acceptance (cairn target accept " + id + ")", Code: fleet.CodePending})
	case err == nil && t.State == store.StateRejected:
		writeError(w, http.StatusForbidden, "target %s was rejected", id)
	case err == nil || errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusUnauthorized, "target %s is not enrolled: enroll with this client certificate first", id)
	default:
		writeError(w, http.StatusServiceUnavailable, "look up target: %v", err)
	}
	return false
}

// certNames are the names of the request's client certificate, its
// CommonName then its DNS names, when it verified against the server's
// client CA (tls.VerifyClientCertIfGiven leaves VerifiedChains empty for a
// connection that presented none); nil otherwise.
func certNames(r *http.Request) []string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return nil
	}
	leaf := r.TLS.VerifiedChains[0][0]
	var names []string
	if leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	for _, n := range leaf.DNSNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

func (s *Server) limiterIn(m map[string]*rate.Limiter, id string, r rate.Limit, b int) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := m[id]
	if l == nil {
		l = rate.NewLimiter(r, b)
		m[id] = l
	}
	return l
}
