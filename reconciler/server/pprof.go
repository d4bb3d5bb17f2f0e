package server

import (
	"net/http"
	"net/http/pprof"
	"time"
)

// maxProfileTime bounds how long /debug/pprof/profile and trace may run.
const maxProfileTime = 5 * time.Minute

// debugRoutes adds Go's runtime profiles under /debug/pprof/, admin token
// only: a heap profile names targets and releases, and a CPU profile costs
// the server time. The read-only token gets 403, anything else 401.
func (s *Server) debugRoutes(mux *http.ServeMux) {
	long := func(f http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			// ?seconds= outlives the server's WriteTimeout.
			extendDeadlines(w, maxProfileTime+WriteTimeout)
			f(w, r)
		}
	}
	mux.HandleFunc("GET /debug/pprof/", s.admin(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", s.admin(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/symbol", s.admin(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/profile", s.admin(long(pprof.Profile)))
	mux.HandleFunc("GET /debug/pprof/trace", s.admin(long(pprof.Trace)))
}
