package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"golang.org/x/time/rate"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Device identity follows Mender's model: the shared enrollment token only
// ever creates a pending target (unless AutoAccept), a name that has a
// credential is re-bound only by proving that credential, by a one-time
// pre-authorised token or by an admin accepting the new one, and the old
// credential keeps working until then.

// enroll answers POST /api/v1/enroll.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	if !s.addrLimiter(s.enrollLim, r, s.cfg.EnrollRate, s.cfg.EnrollBurst).Allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "enroll: too many enrollments from %s", peerIP(r))
		return
	}
	if s.authBlocked(r) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "enroll: too many failed attempts from %s", peerIP(r))
		return
	}
	var req fleet.EnrollRequest
	if err := decodeBody(w, r, maxEnrollBody, &req); err != nil {
		writeError(w, statusOf(err), "enroll: %v", err)
		return
	}
	if err := ValidateEnroll(req); err != nil {
		writeError(w, http.StatusBadRequest, "enroll: %v", err)
		return
	}
	ctx := r.Context()
	old, err := s.cfg.Store.Target(ctx, req.Name)
	exists := err == nil && old.State != store.StateDeleted
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusServiceUnavailable, "enroll %s: look up target: store unavailable", req.Name)
		return
	}
	cred := NewToken()
	t, how, refused := s.bind(r, req, old, exists, cred)
	if refused != nil {
		writeError(w, refused.code, "%s", refused.msg)
		return
	}
	if err := s.cfg.Store.EnrollTarget(ctx, t); err != nil {
		s.log.Error("enroll", "target", t.ID, "err", err)
		writeError(w, http.StatusInternalServerError, "enroll %s: store unavailable", t.ID)
		return
	}
	s.log.Info("target enrolled", "target", t.ID, "how", how, "peer", peerIP(r))
	pending := t.State != store.StateAccepted || t.CredHash != HashCredential(cred)
	code := http.StatusAccepted
	if !pending {
		code = http.StatusCreated
		s.remember(t.ID, t.CredHash)
		s.hub.ensure(t.ID)
		if s.cfg.OnStatus != nil {
			s.cfg.OnStatus(t.ID)
		}
	}
	writeJSON(w, code, fleet.EnrollResponse{ID: t.ID, Credential: cred, Pending: pending})
}

// refusal is an enrollment refused: its HTTP status and message.
type refusal struct {
	code int
	msg  string
}

// bind decides what enrolling req.Name with the new credential cred does:
// the target to store and how it was bound, or why it is refused. old is
// the stored target of that name when exists.
func (s *Server) bind(r *http.Request, req fleet.EnrollRequest, old store.Target, exists bool, cred string) (store.Target, string, *refusal) {
	t := store.Target{ID: req.Name, Name: req.Name, Labels: req.Labels, Facts: req.Facts}
	if exists {
		t.EnrolledAt = old.EnrolledAt
	}
	rejected := &refusal{http.StatusForbidden, fmt.Sprintf("enroll %s: this target was rejected; an admin must delete it first", req.Name)}
	switch {
	case exists && old.State == store.StateAccepted && req.Credential != "" && tokenEqual(HashCredential(req.Credential), old.CredHash):
		// Re-enrollment proving the current credential rotates it.
		t.State, t.CredHash = store.StateAccepted, HashCredential(cred)
		return t, "credential rotated (old one proven)", nil
	case slices.Contains(certNames(r), req.Name):
		// The client CA vouches for the name: no token is needed, and the
		// certificate proves the name as an admin's acceptance would.
		if exists && old.State == store.StateRejected {
			return t, "", rejected
		}
		t.State, t.CredHash = store.StateAccepted, HashCredential(cred)
		return t, "client certificate", nil
	case req.Token != "" && s.takePreauth(r, req.Name, req.Token):
		t.State, t.CredHash = store.StateAccepted, HashCredential(cred)
		return t, "pre-authorised token", nil
	case tokenEqual(req.Token, s.cfg.EnrollToken):
		switch {
		case exists && old.State == store.StateRejected:
			return t, "", rejected
		case exists && old.State == store.StateAccepted:
			// Never re-bind a name with a credential: the new one waits for
			// an admin, the old one keeps working.
			t = old
			t.PendingHash = HashCredential(cred)
			return t, "second credential pending acceptance (the current one keeps working)", nil
		case s.cfg.AutoAccept:
			t.State, t.CredHash = store.StateAccepted, HashCredential(cred)
			return t, "accepted (enrollment: auto)", nil
		default:
			t.State, t.PendingHash = store.StatePending, HashCredential(cred)
			return t, "pending acceptance", nil
		}
	default:
		s.authFailed(r)
		return t, "", &refusal{http.StatusUnauthorized, "enroll: invalid enrollment token"}
	}
}

func (s *Server) takePreauth(r *http.Request, name, tok string) bool {
	ok, err := s.cfg.Store.TakePreauth(r.Context(), name, HashCredential(tok))
	if err != nil {
		s.log.Warn("pre-authorised enrollment", "target", name, "err", err)
	}
	return ok && err == nil
}

// targetAction answers POST /api/v1/targets/{id}/{accept,reject} and
// DELETE /api/v1/targets/{id} (admin token).
func (s *Server) targetAction(action string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		t, err := s.cfg.Store.Target(r.Context(), id)
		if errors.Is(err, store.ErrNotFound) || (err == nil && t.State == store.StateDeleted) {
			writeError(w, http.StatusNotFound, "target %s is not enrolled", id)
			return
		}
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "%s %s: %v", action, id, err)
			return
		}
		state, cred, pending := t.State, t.CredHash, t.PendingHash
		switch action {
		case "accept":
			if t.PendingHash == "" {
				writeError(w, http.StatusConflict, "accept %s: no credential is pending (state %s)", id, t.State)
				return
			}
			state, cred, pending = store.StateAccepted, t.PendingHash, ""
		case "reject":
			switch {
			case t.State == store.StateAccepted && t.PendingHash != "":
				pending = "" // refuse the second credential, keep the device
			case t.State == store.StateAccepted:
				writeError(w, http.StatusConflict, "reject %s: it is accepted and nothing is pending (delete it instead)", id)
				return
			default:
				state, cred, pending = store.StateRejected, "", ""
			}
		case "delete":
			state, cred, pending = store.StateDeleted, "", ""
		}
		if err := s.cfg.Store.SetTargetAuth(r.Context(), id, state, cred, pending); err != nil {
			writeError(w, http.StatusServiceUnavailable, "%s %s: %v", action, id, err)
			return
		}
		if state == store.StateAccepted {
			s.remember(id, cred)
			s.hub.ensure(id)
		} else {
			s.forget(id)
		}
		s.log.Info("target "+action+"ed", "target", id, "state", state)
		if s.cfg.OnStatus != nil {
			s.cfg.OnStatus(id)
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// preauth answers POST /api/v1/targets/{id}/preauth with a one-time token.
func (s *Server) preauth(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := ValidateEnroll(fleet.EnrollRequest{Name: id}); err != nil {
		writeError(w, http.StatusBadRequest, "pre-authorise: %v", err)
		return
	}
	tok := NewToken()
	if err := s.cfg.Store.PutPreauth(r.Context(), id, HashCredential(tok)); err != nil {
		writeError(w, http.StatusServiceUnavailable, "pre-authorise %s: %v", id, err)
		return
	}
	s.log.Info("target pre-authorised", "target", id)
	writeJSON(w, http.StatusCreated, fleet.PreauthResponse{Token: tok})
}

// peerIP is the request's source address without its port.
func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// addrLimiter returns the limiter of the request's source address in m.
func (s *Server) addrLimiter(m map[string]*rate.Limiter, r *http.Request, lim rate.Limit, burst int) *rate.Limiter {
	s.mu.Lock()
	if len(m) > 100000 { // bound the memory an address sweep can take
		clear(m)
	}
	s.mu.Unlock()
	return s.limiterIn(m, peerIP(r), lim, burst)
}

// authBlocked reports whether the request's address failed authentication
// too often lately; authFailed counts a failure.
func (s *Server) authBlocked(r *http.Request) bool {
	return s.addrLimiter(s.failLim, r, s.cfg.FailRate, s.cfg.FailBurst).TokensAt(time.Now()) < 1
}

func (s *Server) authFailed(r *http.Request) {
	s.addrLimiter(s.failLim, r, s.cfg.FailRate, s.cfg.FailBurst).Allow()
}
