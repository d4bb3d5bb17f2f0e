package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/evaluations"
	"github.com/cairn-dev/cairn/registry/blobs"
)

// maxEvaluationReport bounds the body of an evaluator's report.
const maxEvaluationReport = 256 << 10

// desiredRun returns the evaluation run the target's desired state asks
// of it; it answers 409 and false when there is none of that id.
func (s *Server) desiredRun(w http.ResponseWriter, id, run string) bool {
	body, ok := s.hub.get(id)
	var ds fleet.DesiredState
	if ok && json.Unmarshal(body.Bytes(), &ds) == nil &&
		slices.ContainsFunc(ds.Evaluations, func(e fleet.EvaluationRun) bool { return e.ID == run }) {
		return true
	}
	writeError(w, http.StatusConflict, "evaluation %s: not asked of target %s", run, id)
	return false
}

// evaluationReport takes an evaluator's results of one run asked of it.
func (s *Server) evaluationReport(w http.ResponseWriter, r *http.Request) {
	id, run := r.PathValue("id"), r.PathValue("run")
	if !s.authTarget(w, r, id) || !s.desiredRun(w, id, run) {
		return
	}
	var rep fleet.EvaluationReport
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEvaluationReport))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		writeError(w, http.StatusBadRequest, "evaluation %s: decode report: %v", run, err)
		return
	}
	rec, err := s.cfg.Evaluations.Record(r.Context(), run, id, rep)
	switch {
	case errors.Is(err, evaluations.ErrInvalid):
		writeError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, evaluations.ErrNotFound):
		writeError(w, http.StatusConflict, "%v", err)
	case err != nil:
		s.log.Error("record evaluation", "target", id, "run", run, "err", err)
		writeError(w, http.StatusInternalServerError, "record evaluation %s: %v", run, err)
	default:
		if s.cfg.OnStatus != nil {
			s.cfg.OnStatus(id) // the verdict may lift a denial: reconcile soon
		}
		writeJSON(w, http.StatusOK, rec)
	}
}

// evaluationBlob serves an evaluator the objects of its run's holdout
// dataset (trees and blobs only) from the server's dataset store: HEAD
// answers the size, GET the bytes from ?offset= for ?length= (to the end
// when negative or absent). The agent verifies every byte against the
// dataset's digests, as cairn data pull does.
func (s *Server) evaluationBlob(w http.ResponseWriter, r *http.Request) {
	id, runID, key := r.PathValue("id"), r.PathValue("run"), r.PathValue("key")
	if !s.authTarget(w, r, id) || !s.desiredRun(w, id, runID) {
		return
	}
	if !strings.HasPrefix(key, "trees/") && !strings.HasPrefix(key, "blobs/") || strings.Contains(key, "..") {
		writeError(w, http.StatusBadRequest, "evaluation %s: %q is not a dataset object", runID, key)
		return
	}
	run, ok, err := s.cfg.Evaluations.Get(r.Context(), runID)
	if err != nil || !ok {
		writeError(w, http.StatusConflict, "evaluation %s: not found (%v)", runID, err)
		return
	}
	bs, err := s.cfg.DatasetStores(r.Context(), run.Store)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "evaluation %s: %v", runID, err)
		return
	}
	info, err := bs.Stat(r.Context(), key)
	switch {
	case errors.Is(err, blobs.ErrNotFound):
		writeError(w, http.StatusNotFound, "evaluation %s: %s not in dataset store %s", runID, key, run.Store)
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "evaluation %s: %v", runID, err)
		return
	}
	off, length := int64(0), int64(-1)
	if v := r.URL.Query().Get("offset"); v != "" {
		if off, err = strconv.ParseInt(v, 10, 64); err != nil || off < 0 || off > info.Size {
			writeError(w, http.StatusBadRequest, "evaluation %s: bad offset %q", runID, v)
			return
		}
	}
	if v := r.URL.Query().Get("length"); v != "" {
		if length, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "evaluation %s: bad length %q", runID, v)
			return
		}
	}
	n := info.Size - off
	if length >= 0 && length < n {
		n = length
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Object-Size", strconv.FormatInt(info.Size, 10))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	rc, err := bs.Get(r.Context(), key, off, n)
	if err != nil {
		w.Header().Del("Content-Length")
		writeError(w, http.StatusServiceUnavailable, "evaluation %s: %v", runID, err)
		return
	}
	defer rc.Close()
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
}

// evaluationList lists the evaluation runs (?release=), newest first.
func (s *Server) evaluationList(w http.ResponseWriter, r *http.Request) {
	recs, err := s.cfg.Evaluations.List(r.Context(), r.URL.Query().Get("release"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list evaluations: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, recs)
}
