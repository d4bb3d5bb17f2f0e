package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Body limits of the fleet API.
const (
	maxEnrollBody = 64 << 10
	maxStatusBody = 1 << 20
)

// pollWait parses ?wait= (a Go duration, or seconds) bounded by MaxPollWait.
func (s *Server) pollWait(r *http.Request) time.Duration {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return s.cfg.PollWait
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, err := strconv.Atoi(v)
		if err != nil {
			return s.cfg.PollWait
		}
		d = time.Duration(n) * time.Second
	}
	return min(max(d, 0), s.cfg.MaxPollWait)
}

func (s *Server) desired(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authTarget(w, r, id) {
		return
	}
	if !s.allowPoll(id) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "desired state of %s: polling too fast", id)
		return
	}
	body, ok := s.hub.get(id)
	if inm := r.Header.Get("If-None-Match"); inm != "" && !matchETag(inm, body.ETag()) {
		// The agent holds a state other than the cached one: either older
		// (it is behind) or newer, seen on a replica this one has not
		// synced with yet. The store decides: what an agent holds was
		// stored first, so once the cache holds the stored state it is
		// never older than the agent's. The stored state is published (a
		// no-op when the cache holds one as new: the sync loop may have
		// brought it meanwhile) and the cache read again; the copy read
		// before the store was asked may be the older one.
		d, err := s.cfg.Store.Desired(r.Context(), id)
		switch {
		case err == nil:
			s.hub.publish([]store.Desired{d})
		case errors.Is(err, store.ErrNotFound):
			// Nothing stored yet: the cached state is all there is.
		default:
			// Without the store the cached state may be older than the
			// agent's: the agent asks again, it keeps what it runs.
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "desired state of %s: %v", id, err)
			return
		}
		body, ok = s.hub.get(id)
	}
	if !ok {
		s.hub.ensure(id)
		body, _ = s.hub.get(id)
	}
	etag := body.ETag()
	if inm := r.Header.Get("If-None-Match"); inm != "" && matchETag(inm, etag) {
		wait := s.pollWait(r)
		if wait > 0 {
			// The long-poll outlives the server's Read and WriteTimeout.
			extendDeadlines(w, wait+WriteTimeout)
			changed := s.hub.watch(id, etag)
			t := time.NewTimer(wait)
			select {
			case <-changed:
				body, _ = s.hub.get(id)
				etag = body.ETag()
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
		}
		if matchETag(inm, etag) {
			w.Header().Set("ETag", strconv.Quote(etag))
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	h := w.Header()
	h.Set("ETag", strconv.Quote(etag))
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(body.Len()))
	body.WriteTo(w)
}

// matchETag reports whether an If-None-Match header names etag.
func matchETag(header, etag string) bool {
	for _, p := range strings.Split(header, ",") {
		p = strings.TrimPrefix(strings.TrimSpace(p), "W/")
		if p == "*" || strings.Trim(p, `"`) == etag {
			return true
		}
	}
	return false
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.authTarget(w, r, id) {
		return
	}
	id, ok := s.allowStatus(id) // the server's copy of id, kept by what the report reaches
	if !ok {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "status of %s: too many reports", id)
		return
	}
	var rep fleet.StatusReport
	if err := decodeBody(w, r, maxStatusBody, &rep); err != nil {
		writeError(w, statusOf(err), "status of %s: %v", id, err)
		return
	}
	if err := ValidateStatus(rep); err != nil {
		writeError(w, http.StatusBadRequest, "status of %s: %v", id, err)
		return
	}
	if err := s.checkDigests(r, id, rep); err != nil {
		if errors.Is(err, errUndesired) {
			writeError(w, http.StatusConflict, "status of %s: %v", id, err)
			return
		}
		s.log.Error("check status digests", "target", id, "err", err)
		writeError(w, http.StatusInternalServerError, "status of %s: store unavailable", id)
		return
	}
	at := time.Now().UTC()
	if err := s.cfg.Store.PutStatus(r.Context(), id, rep, at); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "target %s is not enrolled", id)
			return
		}
		s.log.Error("record status", "target", id, "err", err)
		writeError(w, http.StatusInternalServerError, "status of %s: store unavailable", id)
		return
	}
	// Committed: what the next report may name, and the reconciler's view.
	s.lastReported(id, s.reportedKeys(rep))
	if s.cfg.OnStored != nil {
		s.cfg.OnStored(id, rep, at)
	}
	if s.cfg.OnReport != nil {
		s.cfg.OnReport(r.Context(), id, rep)
	}
	if s.cfg.OnStatus != nil && s.cfg.OnStored == nil {
		s.cfg.OnStatus(id) // OnStored, when set, decides (Config.OnStatus)
	}
	w.WriteHeader(http.StatusNoContent)
}

var errUndesired = errors.New("digest never desired for this target")

// checkDigests refuses a report naming a model digest (active or being
// installed) the target was never told to run: a digest of its desired
// state now or of the one before it, or one its last accepted report
// already named (what it ran before this server started). A report that
// names no digest (a heartbeat of an empty target) passes. The desired
// states and the last report this server stored are in memory; the store
// is read only when they do not allow the report (a report or desired
// state written by another replica, or before a restart).
func (s *Server) checkDigests(r *http.Request, id string, rep fleet.StatusReport) error {
	var named []string
	for _, rs := range rep.Releases {
		for _, d := range []string{rs.Digest, rs.Desired} {
			if d != "" {
				named = append(named, digestKey(rs.Release, d))
			}
		}
	}
	if len(named) == 0 {
		return nil
	}
	now, prev, cached := s.hub.keysOf(id, s.desiredKeys)
	last := s.reportedOf(id)
	missing := named[:0:0]
	for _, n := range named {
		if !slices.Contains(now, n) && !slices.Contains(prev, n) && !slices.Contains(last, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	known := map[string]bool{}
	if !cached {
		if d, err := s.cfg.Store.Desired(r.Context(), id); err == nil {
			for _, k := range s.desiredKeys(d.Body) {
				known[k] = true
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if t, err := s.cfg.Store.Target(r.Context(), id); err == nil && t.Status != nil {
		for _, k := range s.reportedKeys(*t.Status) {
			known[k] = true
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, n := range missing {
		if !known[n] {
			rel, d, _ := strings.Cut(n, "\x00")
			return fmt.Errorf("release %s digest %s: %w (neither its desired state nor the previous one)", rel, d, errUndesired)
		}
	}
	return nil
}

var errTooLarge = errors.New("request body too large")

func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w (limit %d bytes)", errTooLarge, limit)
		}
		return fmt.Errorf("decode body: %w", err)
	}
	return nil
}

func statusOf(err error) int {
	if errors.Is(err, errTooLarge) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}
