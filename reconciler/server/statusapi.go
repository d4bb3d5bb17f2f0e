package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/fleetstate"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Commands accepted by POST /api/v1/releases/{name}/rollout/{action}.
var actions = map[string]bool{"pause": true, "resume": true, "abort": true, "retry": true}

func (s *Server) withDesired(ti *fleet.TargetInfo) {
	if body, ok := s.hub.get(ti.ID); ok {
		var ds fleet.DesiredState
		if json.Unmarshal(body.Bytes(), &ds) == nil {
			ti.Desired, ti.ETag = ds.Models, ds.ETag
		}
	}
}

func (s *Server) targetInfos(r *http.Request) ([]fleet.TargetInfo, error) {
	ts, err := s.cfg.Store.Targets(r.Context())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := make([]fleet.TargetInfo, 0, len(ts))
	for _, t := range ts {
		if t.State == store.StateDeleted {
			continue
		}
		ti := fleetstate.TargetInfo(t, now, s.cfg.OfflineAfter)
		s.withDesired(&ti)
		out = append(out, ti)
	}
	return out, nil
}

func (s *Server) targets(w http.ResponseWriter, r *http.Request) {
	out, err := s.targetInfos(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list targets: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) target(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, err := s.cfg.Store.Target(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && t.State == store.StateDeleted) {
		writeError(w, http.StatusNotFound, "target %s is not enrolled", id)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "get target %s: %v", id, err)
		return
	}
	ti := fleetstate.TargetInfo(t, time.Now(), s.cfg.OfflineAfter)
	s.withDesired(&ti)
	if ti.Log, err = s.cfg.Store.Log(r.Context(), id, 100); err != nil {
		writeError(w, http.StatusInternalServerError, "get target %s: %v", id, err)
		return
	}
	writeJSON(w, http.StatusOK, ti)
}

func (s *Server) releaseInfos(r *http.Request) ([]fleet.ReleaseInfo, error) {
	recs, err := s.cfg.Store.Records(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]fleet.ReleaseInfo, len(recs))
	for i, rec := range recs {
		out[i] = rec.Status
	}
	return out, nil
}

func (s *Server) releases(w http.ResponseWriter, r *http.Request) {
	out, err := s.releaseInfos(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list releases: %v", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) release(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rec, err := s.cfg.Store.Record(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "release %s is not admitted", name)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, "get release %s: %v", name, err)
		return
	}
	writeJSON(w, http.StatusOK, rec.Status)
}

func (s *Server) inventory(w http.ResponseWriter, r *http.Request) {
	ts, err := s.cfg.Store.Targets(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "inventory: %v", err)
		return
	}
	inv := fleet.Inventory{Targets: make([]fleet.Target, 0, len(ts)), Releases: []fleet.ReleaseState{}}
	for _, t := range ts {
		if t.State != store.StateAccepted {
			continue
		}
		ft := fleet.Target{Name: t.Name, Labels: t.Labels, Facts: t.Facts}
		if t.Status != nil {
			for _, rs := range t.Status.Releases {
				if rs.Digest != "" {
					if ft.Models == nil {
						ft.Models = map[string]string{}
					}
					ft.Models[rs.Release] = rs.Digest
				}
			}
		}
		inv.Targets = append(inv.Targets, ft)
	}
	rels, err := s.releaseInfos(r)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "inventory: %v", err)
		return
	}
	for _, ri := range rels {
		inv.Releases = append(inv.Releases, ri.ReleaseState)
	}
	if b, err := s.cfg.Store.Meta(r.Context(), "admitted-commit"); err == nil {
		inv.Commit = string(b)
	}
	writeJSON(w, http.StatusOK, inv)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := fleet.EventFilter{Release: q.Get("release"), Target: q.Get("target"), Type: q.Get("type")}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil {
		f.Limit = min(n, 10000)
	}
	evs, err := s.cfg.Store.Events(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "list events: %v", err)
		return
	}
	if evs == nil {
		evs = []fleet.Event{}
	}
	writeJSON(w, http.StatusOK, evs)
}

func (s *Server) source(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Source == nil {
		writeJSON(w, http.StatusOK, fleet.SourceInfo{})
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Source())
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	out := []fleet.AlertDelivery{}
	if s.cfg.Alerts != nil {
		var states []string
		if v := r.URL.Query().Get("state"); v != "" {
			states = strings.Split(v, ",")
		}
		ds, err := s.cfg.Alerts(r.Context(), states...)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "list alerts: %v", err)
			return
		}
		if ds != nil {
			out = ds
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) rolloutAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if !actions[action] {
		writeError(w, http.StatusBadRequest, "unknown rollout action %q: want pause, resume, abort or retry", action)
		return
	}
	if _, err := s.cfg.Store.Release(r.Context(), name); errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "release %s is not admitted", name)
		return
	}
	if err := s.cfg.Store.PushCommand(r.Context(), name, action); err != nil {
		writeError(w, http.StatusInternalServerError, "rollout %s %s: %v", action, name, err)
		return
	}
	s.cfg.Store.AddEvents(r.Context(), []fleet.Event{{Type: "RolloutCommand", Reason: action, Release: name, Message: "operator asked to " + action + " the rollout"}})
	s.log.Info("rollout command queued", "release", name, "action", action)
	if s.cfg.OnCommand != nil {
		s.cfg.OnCommand(name)
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"release": name, "action": action})
}
