package server

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/feedback"
)

// feedbackUpload takes a batch of sampled inputs from a target: only for a
// release desired on it with feedback, at the digest it is desired to run.
func (s *Server) feedbackUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authTarget(w, r, id) {
		return
	}
	release, digest := r.URL.Query().Get("release"), r.URL.Query().Get("digest")
	body, ok := s.hub.get(id)
	var ds fleet.DesiredState
	if !ok || json.Unmarshal(body.Bytes(), &ds) != nil {
		writeError(w, http.StatusConflict, "feedback of %s: no desired state", id)
		return
	}
	var want *fleet.DesiredModel
	for i := range ds.Models {
		if ds.Models[i].Release == release {
			want = &ds.Models[i]
		}
	}
	switch {
	case want == nil:
		writeError(w, http.StatusConflict, "feedback of %s: release %q is not desired on it", id, release)
		return
	case want.Feedback == nil:
		writeError(w, http.StatusConflict, "feedback of %s: release %s asks for no feedback", id, release)
		return
	case want.Digest != digest:
		writeError(w, http.StatusConflict, "feedback of %s: release %s runs %s here, not %s", id, release, want.Digest, digest)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, feedback.MaxBatch+1)
	b, err := s.cfg.Feedback.Receive(r.Context(), feedback.Upload{Target: id, Release: release, ModelDigest: digest,
		Store: want.Feedback.Store, MaxPerDay: want.Feedback.MaxPerDay}, r.Body)
	switch {
	case errors.Is(err, feedback.ErrInvalid):
		writeError(w, http.StatusBadRequest, "feedback of %s: %v", id, err)
	case errors.Is(err, feedback.ErrOverBudget):
		w.Header().Set("Retry-After", "3600")
		writeError(w, http.StatusTooManyRequests, "feedback of %s: %v", id, err)
	case err != nil:
		s.log.Error("store feedback", "target", id, "release", release, "err", err)
		writeError(w, http.StatusInternalServerError, "feedback of %s: %v", id, err)
	default:
		writeJSON(w, http.StatusOK, b)
	}
}

// feedbackList lists the stored batches (?target=, ?release=).
func (s *Server) feedbackList(w http.ResponseWriter, r *http.Request) {
	bs, err := s.cfg.Feedback.List(r.Context(), r.URL.Query().Get("target"), r.URL.Query().Get("release"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list feedback: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, bs)
}
