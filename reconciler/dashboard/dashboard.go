package dashboard

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/store"
)

//go:embed templates/*.html static/*
var files embed.FS

// Config configures the dashboard. Store and AdminToken are required.
type Config struct {
	Store store.Store
	// History and Lineage feed the sparklines, uptime and lineage pages; each optional.
	History *history.History
	Lineage lineage.Querier
	// AdminToken logs in with actions; ReadToken read-only.
	AdminToken, ReadToken string
	// OfflineAfter is the server's (default 3m).
	OfflineAfter time.Duration
	// OnCommand is called after a rollout command is queued (wakes the reconciler).
	OnCommand func(release string)
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PageSize is the fleet list's page (default 50).
	PageSize int
}

// Dashboard is the web interface's http.Handler; Run keeps its fleet cache
// current and tells open pages when something changed.
type Dashboard struct {
	cfg   Config
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	cache *cache

	mu      sync.Mutex
	clients map[chan struct{}]struct{}

	// The cache is refreshed only while the dashboard is watched: a page
	// was asked for within idleAfter, or a page listens to /live. A
	// fleet nobody looks at costs no reads (and no copy is kept up to date).
	watchedAt atomic.Int64 // UnixNano of the last page request
	refreshMu sync.Mutex   // one refresh at a time
	refreshed atomic.Int64 // UnixNano of the last refresh
}

// idleAfter is how long after the last page request the dashboard stops
// refreshing its cache (unless a page listens to /live).
const idleAfter = time.Minute

// staleAfter is how old a cache a page request refreshes first.
const staleAfter = time.Second

// New returns the dashboard; call Run to fill its cache.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = 3 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 50
	}
	d := &Dashboard{cfg: cfg, log: cfg.Logger, cache: newCache(cfg.Store), clients: map[chan struct{}]struct{}{}, pages: map[string]*template.Template{}}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		page := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if page == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("parse dashboard template %s: %w", n, err)
		}
		d.pages[page] = t
	}
	d.routes()
	return d, nil
}

func (d *Dashboard) now() time.Time { return d.cfg.Now() }

// ServeHTTP serves the pages.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	d.mux.ServeHTTP(w, r)
}

// watched notes a signed-in page request and refreshes the cache first when it is
// older than staleAfter (the first page after an idle spell).
func (d *Dashboard) watched(ctx context.Context) {
	now := time.Now()
	d.watchedAt.Store(now.UnixNano())
	if now.Sub(time.Unix(0, d.refreshed.Load())) < staleAfter {
		return
	}
	if err := d.refresh(ctx); err != nil && ctx.Err() == nil {
		d.log.Warn("dashboard: refresh fleet", "err", err)
	}
}

// watching reports whether a page was asked for within idleAfter or a page
// listens to /live.
func (d *Dashboard) watching() bool {
	d.mu.Lock()
	live := len(d.clients) > 0
	d.mu.Unlock()
	return live || time.Since(time.Unix(0, d.watchedAt.Load())) < idleAfter
}

func (d *Dashboard) refresh(ctx context.Context) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	changed, err := d.cache.refresh(ctx)
	if err == nil {
		d.refreshed.Store(time.Now().UnixNano())
	}
	if changed {
		d.notify()
	}
	return err
}

func (d *Dashboard) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /login", d.loginPage)
	m.HandleFunc("POST /login", d.login)
	m.HandleFunc("POST /logout", d.logout)
	m.HandleFunc("GET /{$}", d.authed(d.fleetPage))
	m.HandleFunc("GET /targets/{id}", d.authed(d.targetPage))
	m.HandleFunc("GET /releases", d.authed(d.releasesPage))
	m.HandleFunc("GET /releases/{name}", d.authed(d.releasePage))
	m.HandleFunc("GET /releases/{name}/confirm", d.authed(d.confirmPage))
	m.HandleFunc("POST /releases/{name}/action", d.authed(d.action))
	m.HandleFunc("GET /events", d.authed(d.eventsPage))
	m.HandleFunc("GET /lineage", d.authed(d.lineagePage))
	m.HandleFunc("GET /live", d.authed(d.live))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	d.mux = m
}

// Run refreshes the fleet cache every interval while the dashboard is
// watched (see watching) until ctx ends, telling the open pages when
// anything changed.
func (d *Dashboard) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if d.watching() {
			if err := d.refresh(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("dashboard: refresh fleet", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Refresh reads the store's changes once (tests and benchmarks).
func (d *Dashboard) Refresh(ctx context.Context) error { return d.refresh(ctx) }

func (d *Dashboard) notify() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.clients {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// live streams server-sent events: "change" whenever the fleet, a release or
// the events changed, at most one a second, and a comment every 15 s.
func (d *Dashboard) live(w http.ResponseWriter, r *http.Request, _ string) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c := make(chan struct{}, 1)
	d.mu.Lock()
	d.clients[c] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.clients, c)
		d.mu.Unlock()
	}()
	fmt.Fprint(w, "retry: 3000\n\n")
	rc.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c:
			if _, err := fmt.Fprint(w, "event: change\ndata: {}\n\n"); err != nil {
				return
			}
			time.Sleep(time.Second)
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		}
		if rc.Flush() != nil {
			return
		}
	}
}

// render executes a page into a buffer first, so a template error is a 500
// and not half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, code int, page string, data map[string]any) {
	t := d.pages[page]
	if data == nil {
		data = map[string]any{}
	}
	data["Page"] = page
	if _, ok := data["Role"]; !ok {
		data["Role"] = d.role(r)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout.html", data); err != nil {
		d.log.Error("dashboard: render", "page", page, "err", err)
		http.Error(w, "render "+page+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

func (d *Dashboard) fail(w http.ResponseWriter, r *http.Request, code int, format string, args ...any) {
	d.render(w, r, code, "error", map[string]any{"Title": http.StatusText(code), "Message": fmt.Sprintf(format, args...)})
}
