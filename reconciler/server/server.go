package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/reconciler/evaluations"
	"github.com/cairn-dev/cairn/reconciler/feedback"
	"github.com/cairn-dev/cairn/reconciler/store"
)

// Config configures a Server. Zero values are usable except Store.
type Config struct {
	Store store.Store
	// EnrollToken enrolls new targets, pending an admin's acceptance unless
	// AutoAccept; empty refuses every enrollment but pre-authorised ones.
	EnrollToken string
	// AutoAccept accepts new names enrolled with EnrollToken at once
	// (`enrollment: auto`); a name with a credential is never re-bound by it.
	AutoAccept bool
	// EnrollRate and EnrollBurst limit enrollments per source address
	// (0.2/s, burst 20); FailRate and FailBurst failed authentications per
	// address (1/s, burst 20) before answering 429.
	EnrollRate  rate.Limit
	EnrollBurst int
	FailRate    rate.Limit
	FailBurst   int
	// RequestRate and RequestBurst limit requests per source address
	// (100/s, burst 1000); /healthz is exempt.
	RequestRate  rate.Limit
	RequestBurst int
	// AdminToken may read and act; ReadToken may only read the status API.
	AdminToken, ReadToken string
	Logger                *slog.Logger
	Metrics               *Metrics
	// OfflineAfter is how long without contact makes a target offline (default 3m).
	OfflineAfter time.Duration
	// PollWait is the default long-poll wait (30s); MaxPollWait its bound (60s).
	PollWait, MaxPollWait time.Duration
	// StatusRate and StatusBurst limit status reports per credential (1/s,
	// burst 10); PollRate and PollBurst desired-state polls (5/s, burst 20).
	StatusRate  rate.Limit
	StatusBurst int
	PollRate    rate.Limit
	PollBurst   int
	// SyncInterval is how often desired states written by another replica
	// are read from the store (1s).
	SyncInterval time.Duration
	// GitHook receives POST /hooks/git; Registry serves /v2/; Lineage serves
	// /api/v1/lineage/ — each optional.
	GitHook, Registry, Lineage http.Handler
	// RegistryPull is who may pull from Registry: "anonymous" (default:
	// anyone who reaches the listener) or "token" (the admin or read-only
	// token, or an enrolled target's credential).
	RegistryPull string
	// RegistryGC, when set, serves POST /api/v1/registry/gc (admin token).
	RegistryGC func(ctx context.Context, removeUntagged bool) (GCResult, error)
	// LineageRecord serves POST /api/v1/lineage/record (admin token).
	LineageRecord http.Handler
	// History serves GET /api/v1/targets/{id}/metrics and GET /api/v1/uptime
	// (admin or read-only token); Dashboard serves every other path under /
	// (it checks its own session). Both optional.
	History, Dashboard http.Handler
	// OnStatus is called after a target's status changes (enrolled,
	// accepted, rejected, a status report stored, an evaluation result);
	// OnCommand after an operator command is queued. Both must not block.
	// When OnStored is set, a status report calls it instead of OnStatus.
	OnStatus  func(id string)
	OnCommand func(release string)
	// OnStored receives every status report once it is committed, with the
	// time it was stored as received at (the target's last seen), before
	// the reply; it must not block (the reconciler's view of the fleet,
	// which asks for a pass only when the report changes what one reads).
	OnStored func(id string, rep fleet.StatusReport, at time.Time)
	// OnReport receives every stored status report (lineage records the
	// deployments it carries); it runs in the request.
	OnReport func(ctx context.Context, id string, rep fleet.StatusReport)
	// Ready reports whether the server is ready to take traffic (readyz).
	Ready func(ctx context.Context) error
	// Source returns the Git source's state for GET /api/v1/source.
	Source func() any
	// Alerts lists alert deliveries in the given states (all when none);
	// nil serves an empty list.
	Alerts func(ctx context.Context, states ...string) ([]fleet.AlertDelivery, error)
	// Feedback, when set, takes targets' feedback uploads (POST
	// /api/v1/targets/{id}/feedback) and lists them (GET /api/v1/feedback).
	Feedback *feedback.Store
	// Evaluations, when set, takes evaluator agents' results (POST
	// PathEvaluation), serves them their run's holdout from DatasetStores
	// (GET PathEvaluationBlob) and lists runs (GET /api/v1/evaluations).
	Evaluations   *evaluations.Store
	DatasetStores feedback.Stores
}

// Server is the HTTP side of cairn serve.
type Server struct {
	cfg Config
	log *slog.Logger
	m   *Metrics
	hub *hub
	mux *http.ServeMux

	mu        sync.Mutex
	known     map[string]*fleetTarget            // by id: credential, limiters, last report's pairs
	byHash    map[[sha256.Size]byte]*fleetTarget // by SHA-256 of the credential
	epoch     time.Time                          // of clock
	enrollLim map[string]*rate.Limiter           // enrollments, by source address
	failLim   map[string]*rate.Limiter           // failed authentications, by source address
	reqLim    map[string]*rate.Limiter           // requests, by source address
	keys      interner                           // of fleetTarget.reported's pairs
}

// New returns the server; call Run to keep its desired-state cache in sync
// and Handler to serve it.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = 3 * time.Minute
	}
	if cfg.PollWait == 0 {
		cfg.PollWait = 30 * time.Second
	}
	if cfg.MaxPollWait == 0 {
		cfg.MaxPollWait = 60 * time.Second
	}
	if cfg.StatusRate == 0 {
		cfg.StatusRate, cfg.StatusBurst = 1, 10
	}
	if cfg.PollRate == 0 {
		cfg.PollRate, cfg.PollBurst = 5, 20
	}
	if cfg.EnrollRate == 0 {
		cfg.EnrollRate, cfg.EnrollBurst = 0.2, 20
	}
	if cfg.FailRate == 0 {
		cfg.FailRate, cfg.FailBurst = 1, 20
	}
	if cfg.RequestRate == 0 {
		cfg.RequestRate, cfg.RequestBurst = 100, 1000
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, hub: newHub(),
		known: map[string]*fleetTarget{}, byHash: map[[sha256.Size]byte]*fleetTarget{}, epoch: time.Now(),
		enrollLim: map[string]*rate.Limiter{}, failLim: map[string]*rate.Limiter{}, reqLim: map[string]*rate.Limiter{}}
	s.routes()
	return s
}

// Handler returns the server's HTTP handler, rate-limited per address.
func (s *Server) Handler() http.Handler { return s.limitRate(sameOrigin(s.mux)) }

// sameOrigin refuses (403) a state-changing request a browser sends from
// another origin: a POST, PUT, PATCH or DELETE whose Sec-Fetch-Site is not
// same-origin (or none: typed by the user), or, from a browser without it,
// whose Origin is not this server's host (http.CrossOriginProtection).
// Requests that carry neither header, as the CLI, the agents, registry
// clients and Git hosts send them, are not from a browser and pass: they
// authenticate with a bearer token, which a page of another origin cannot
// make a browser send. The dashboard's own forms check more strictly (a
// POST without either header is refused there).
func sameOrigin(next http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: a state-changing browser request needs Sec-Fetch-Site: same-origin or an Origin matching %s", r.Host)
	}))
	return p.Handler(next)
}

// Publish caches desired states just written to the store and wakes the
// long-polls of the targets whose state changed.
func (s *Server) Publish(ds []store.Desired) { s.hub.publish(ds) }

// Load fills the caches from the store: credentials and desired states.
func (s *Server) Load(ctx context.Context) error {
	ts, err := s.cfg.Store.Targets(ctx)
	if err != nil {
		return fmt.Errorf("load targets: %w", err)
	}
	for _, t := range ts {
		if t.State == store.StateAccepted && t.CredHash != "" {
			s.remember(t.ID, t.CredHash)
		}
	}
	return s.sync(ctx)
}

// desiredStreamer is a store that reads desired states one at a time
// (store.SQL).
type desiredStreamer interface {
	EachDesiredSince(ctx context.Context, rev int64, fn func(store.Desired) error) error
}

func (s *Server) sync(ctx context.Context) error {
	since := s.hub.revision()
	st, ok := s.cfg.Store.(desiredStreamer)
	if !ok {
		ds, err := s.cfg.Store.DesiredSince(ctx, since)
		if err != nil {
			return err
		}
		s.hub.publish(ds)
		s.m.DesiredSynced.Add(float64(len(ds)))
		return nil
	}
	// A whole fleet's states (a new model everywhere) are cached a batch
	// at a time, not read into memory all at once; the revision seen moves
	// only once all are, so a failed read is read again from the start.
	batch := make([]store.Desired, 0, 512)
	var newest int64
	n := 0
	err := st.EachDesiredSince(ctx, since, func(d store.Desired) error {
		n++
		newest = max(newest, d.Rev)
		if batch = append(batch, d); len(batch) == cap(batch) {
			s.hub.cache(batch)
			clear(batch)
			batch = batch[:0]
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.hub.cache(batch)
	s.hub.seen(newest)
	s.m.DesiredSynced.Add(float64(n))
	return nil
}

// Run refreshes the desired-state cache from the store every SyncInterval
// until ctx ends, for states written by another replica's leader.
func (s *Server) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.sync(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("sync desired states", "err", err)
			}
		}
	}
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	h := func(pattern, route string, f http.HandlerFunc) { mux.HandleFunc(pattern, s.m.instrument(route, f)) }
	h("POST /api/v1/enroll", "enroll", s.enroll)
	h("GET /api/v1/targets/{id}/desired", "desired", s.desired)
	h("POST /api/v1/targets/{id}/status", "status", s.status)
	h("GET /api/v1/inventory", "inventory", s.read(s.inventory))
	h("GET /api/v1/targets", "targets", s.read(s.targets))
	h("GET /api/v1/targets/{id}", "target", s.read(s.target))
	h("GET /api/v1/releases", "releases", s.read(s.releases))
	h("GET /api/v1/releases/{name}", "release", s.read(s.release))
	h("GET /api/v1/events", "events", s.read(s.events))
	h("GET /api/v1/source", "source", s.read(s.source))
	h("GET /api/v1/alerts", "alerts", s.read(s.alerts))
	if s.cfg.Feedback != nil {
		h("POST "+fleet.PathFeedback, "feedback", s.feedbackUpload)
		h("GET /api/v1/feedback", "feedback-list", s.read(s.feedbackList))
	}
	if s.cfg.Evaluations != nil && s.cfg.DatasetStores != nil {
		h("POST "+fleet.PathEvaluation, "evaluation", s.evaluationReport)
		h("GET "+fleet.PathEvaluationBlob, "evaluation-blob", s.evaluationBlob)
		h("GET /api/v1/evaluations", "evaluation-list", s.read(s.evaluationList))
	}
	h("POST /api/v1/releases/{name}/rollout/{action}", "rollout", s.admin(s.rolloutAction))
	h("POST /api/v1/targets/{id}/accept", "target-accept", s.admin(s.targetAction("accept")))
	h("POST /api/v1/targets/{id}/reject", "target-reject", s.admin(s.targetAction("reject")))
	h("DELETE /api/v1/targets/{id}", "target-delete", s.admin(s.targetAction("delete")))
	h("POST /api/v1/targets/{id}/preauth", "target-preauth", s.admin(s.preauth))
	if s.cfg.GitHook != nil {
		mux.Handle("POST /hooks/git", s.m.instrument("hook", s.countAuthFailures(s.cfg.GitHook).ServeHTTP))
	}
	if s.cfg.Registry != nil {
		mux.Handle("/v2/", streaming(s.registryGuard(s.cfg.Registry)))
	}
	if s.cfg.RegistryGC != nil {
		h("POST /api/v1/registry/gc", "registry-gc", s.admin(s.registryGC))
	}
	if s.cfg.Lineage != nil {
		mux.Handle("/api/v1/lineage/", s.m.instrument("lineage", s.read(s.cfg.Lineage.ServeHTTP)))
	}
	if s.cfg.LineageRecord != nil {
		mux.Handle("POST /api/v1/lineage/record", s.m.instrument("lineage-record", s.admin(s.cfg.LineageRecord.ServeHTTP)))
	}
	if s.cfg.History != nil {
		h("GET /api/v1/targets/{id}/metrics", "metrics-history", s.read(s.cfg.History.ServeHTTP))
		h("GET /api/v1/uptime", "uptime", s.read(s.cfg.History.ServeHTTP))
	}
	if s.cfg.Dashboard != nil {
		mux.Handle("/", s.m.instrument("dashboard", s.cfg.Dashboard.ServeHTTP))
	}
	mux.Handle("GET /metrics", s.m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	s.debugRoutes(mux)
	s.mux = mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ok\n"))
}

// writeJSON answers v as JSON with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}
