package server

import (
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"strconv"
)

// registryGuard puts cairn's auth in front of the built-in registry. Pulls
// (GET, HEAD) are anonymous unless RegistryPull is "token"; a push, tag or
// delete needs the admin token, as a bearer token or as the password of
// basic auth with any user name (what Docker-config credentials, oras and
// crane send). Loopback is not trusted: a TLS proxy on the same host would
// otherwise open the registry to everyone.
func (s *Server) registryGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet || r.Method == http.MethodHead
		if read && s.cfg.RegistryPull != "token" {
			next.ServeHTTP(w, r)
			return
		}
		tok := bearer(r)
		if _, pass, ok := r.BasicAuth(); ok {
			tok = pass
		}
		switch {
		case tokenEqual(tok, s.cfg.AdminToken):
			next.ServeHTTP(w, r)
		case read && (tokenEqual(tok, s.cfg.ReadToken) || s.isTargetCredential(tok) || s.isTargetCert(r)):
			next.ServeHTTP(w, r)
		case tok == "":
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", registryNeed(read))
		case tokenEqual(tok, s.cfg.ReadToken) || s.isTargetCredential(tok):
			registryError(w, http.StatusForbidden, "DENIED", "pushing or deleting needs the admin token; this token may only pull")
		default:
			registryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the token is not valid here: "+registryNeed(read))
		}
	})
}

func registryNeed(read bool) string {
	if read {
		return "pulling from this registry needs a token (registry.pull: token): the admin or read-only token, or a target's credential"
	}
	return "pushing to or deleting from the built-in registry needs the admin token (Bearer, or the password of Basic auth with any user)"
}

func (s *Server) isTargetCredential(tok string) bool {
	if tok == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byHash[sha256.Sum256([]byte(tok))] != nil
}

// isTargetCert says the request's verified client certificate names a
// target with a credential (an accepted one).
func (s *Server) isTargetCert(r *http.Request) bool {
	names := certNames(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		if t := s.known[n]; t != nil && t.cred {
			return true
		}
	}
	return false
}

// registryError answers the OCI distribution error format.
func registryError(w http.ResponseWriter, code int, errCode, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="cairn"`)
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": errCode, "message": msg}}})
}

// registryGC serves POST /api/v1/registry/gc[?untagged=1].
func (s *Server) registryGC(w http.ResponseWriter, r *http.Request) {
	untagged, _ := strconv.ParseBool(r.URL.Query().Get("untagged"))
	res, err := s.cfg.RegistryGC(r.Context(), untagged)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "registry gc: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
