package reconciler

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/sqldb"
	"github.com/cairn-dev/cairn/internal/tlsfiles"
	"github.com/cairn-dev/cairn/lineage"
	"github.com/cairn-dev/cairn/reconciler/dashboard"
	"github.com/cairn-dev/cairn/reconciler/evaluations"
	"github.com/cairn-dev/cairn/reconciler/feedback"
	"github.com/cairn-dev/cairn/reconciler/history"
	"github.com/cairn-dev/cairn/reconciler/notify"
	"github.com/cairn-dev/cairn/reconciler/plan"
	"github.com/cairn-dev/cairn/reconciler/server"
	"github.com/cairn-dev/cairn/reconciler/source"
	"github.com/cairn-dev/cairn/reconciler/store"
	"github.com/cairn-dev/cairn/registry/blobs"
	"github.com/cairn-dev/cairn/registry/datasets"
)

// token returns val, else the token kept in file, else a new one written
// to file (mode 0600). generated reports the last case.
func token(val, file string) (tok string, generated bool, err error) {
	if val != "" {
		return val, false, nil
	}
	if b, err := os.ReadFile(file); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), false, nil
	}
	tok = server.NewToken()
	if err := os.WriteFile(file, []byte(tok+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("write %s: %w", file, err)
	}
	return tok, true, nil
}

// Serve runs cairn serve until ctx ends: store, built-in registry, fleet
// and status APIs, Git source and reconcile loop on one listener. ready, when
// not nil, receives the listening address.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	cfg.Defaults()
	if cfg.RepoCredentialsFile != "" {
		if _, _, err := source.ReadCredentials(cfg.RepoCredentialsFile); err != nil {
			return err
		}
	}
	enrollTok, adminTok, err := dataFolder(cfg, log)
	if err != nil {
		return err
	}
	sts, err := openStores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sts.close()

	if _, err := tlsfiles.Roots(cfg.RegistryCAFile); err != nil {
		return fmt.Errorf("registryCAFile: %w", err)
	}
	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		if tlsConf, err = tlsfiles.Server(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	addr := ln.Addr().String()
	ln = server.LimitListener(ln, maxConnections(cfg.MaxConnections), cmp.Or(cfg.MaxConnectionsPerAddress, 256))
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	parts, err := assemble(ctx, cfg, log, sts, addr, enrollTok, adminTok)
	if err != nil {
		ln.Close()
		return err
	}
	return parts.run(ctx, cfg, log, ln, addr, ready)
}

// dataFolder makes the data folder owner-only (it holds tokens, the
// database and the source's clone, also when it existed before) and
// returns the enrollment and admin tokens, generated there when not given.
// Everything serve writes from then on is owner-only too: it sets the
// process umask to 077 (files 0600, folders 0700 whatever the operator's
// umask: SQLite's -wal and -shm, the registry's uploads, the Git clone),
// and takes the group and other bits off what an older version left.
func dataFolder(cfg Config, log *slog.Logger) (enrollTok, adminTok string, err error) {
	syscall.Umask(0o077)
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return "", "", fmt.Errorf("data folder: %w", err)
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return "", "", fmt.Errorf("data folder: %w", err)
	}
	if err := ownerOnly(cfg.Data); err != nil {
		return "", "", fmt.Errorf("data folder: %w", err)
	}
	enrollTok, gen, err := token(cfg.EnrollToken, filepath.Join(cfg.Data, "enroll-token"))
	if err != nil {
		return "", "", err
	}
	if gen {
		log.Info("generated an enrollment token", "file", filepath.Join(cfg.Data, "enroll-token"))
	}
	adminTok, gen, err = token(cfg.AdminToken, filepath.Join(cfg.Data, "admin-token"))
	if err != nil {
		return "", "", err
	}
	if gen {
		log.Info("generated an admin token", "file", filepath.Join(cfg.Data, "admin-token"))
	}
	return enrollTok, adminTok, nil
}

// ownerOnly takes the group and other permission bits off every file and
// folder under dir (symbolic links are left as they are).
func ownerOnly(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			return os.Chmod(p, m&^0o077)
		}
		return nil
	})
}

// stores are what Serve keeps in its database.
type stores struct {
	db     *sqldb.DB
	st     store.Store
	outbox *notify.Outbox
	graph  *lineage.Graph
	hist   *history.History
	// datasets opens the dataset stores; feedback indexes the fleet's
	// feedback uploads kept in them.
	datasets    feedback.Stores
	feedback    *feedback.Store
	evaluations *evaluations.Store
}

func (s *stores) close() {
	s.st.Close()
	s.db.Close()
}

// openStores opens the database and every store in it.
func openStores(ctx context.Context, cfg Config, log *slog.Logger) (_ *stores, err error) {
	db, err := sqldb.Open(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, db, store.WithLeaseTTL(time.Duration(cfg.LeaseTTL)))
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &stores{db: db, st: st}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.outbox, err = notify.OpenOutbox(ctx, db); err != nil {
		return nil, err
	}
	if s.graph, err = lineage.Open(ctx, db); err != nil {
		return nil, fmt.Errorf("open lineage: %w", err)
	}
	if s.hist, err = history.Open(ctx, db, history.WithOfflineAfter(time.Duration(cfg.OfflineAfter)), history.WithLogger(log)); err != nil {
		return nil, fmt.Errorf("open metrics history: %w", err)
	}
	s.datasets = openDatasetStores(datasetStores(cfg))
	tmp := filepath.Join(cfg.Data, "tmp")
	if err = os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	if s.feedback, err = feedback.Open(ctx, db, feedback.Options{Stores: s.datasets, Lineage: s.graph, Temp: tmp}); err != nil {
		return nil, err
	}
	if s.evaluations, err = evaluations.Open(ctx, db, evaluations.Options{Lineage: s.graph}); err != nil {
		return nil, err
	}
	return s, nil
}

// builtinRegistry is the embedded registry, nil when an external one is
// configured.
func builtinRegistry(ctx context.Context, cfg Config, adminTok string, log *slog.Logger) (*server.Registry, error) {
	if cfg.Registry.Host != "" {
		return nil, nil
	}
	// Opening the blob store creates its S3 bucket when missing; the
	// registry's S3 driver does not.
	if _, err := blobs.Open(ctx, cfg.BlobStore); err != nil {
		return nil, fmt.Errorf("blob store: %w", err)
	}
	return server.NewRegistry(ctx, server.RegistryOptions{Dir: filepath.Join(cfg.Data, "registry"),
		Store: cfg.BlobStore, Secret: server.RegistrySecret(adminTok), Logger: log})
}

// serveParts are the loops and handlers Serve runs.
type serveParts struct {
	sts    *stores
	src    *source.Source
	rec    *Reconciler
	srv    *server.Server
	dash   *dashboard.Dashboard
	alerts *notify.Notifier
}

// assemble builds the registry, source, reconciler, fleet API and
// dashboard, and loads their state.
func assemble(ctx context.Context, cfg Config, log *slog.Logger, sts *stores, addr, enrollTok, adminTok string) (*serveParts, error) {
	reg, err := builtinRegistry(ctx, cfg, adminTok, log)
	if err != nil {
		return nil, err
	}
	p := &serveParts{sts: sts, alerts: notifier(cfg, log, sts.outbox)}
	if cfg.Repo != "" {
		p.src = source.New(source.Config{URL: cfg.Repo, Branch: cfg.Branch, Dir: filepath.Join(cfg.Data, "source"),
			Interval: time.Duration(cfg.Interval), FetchTimeout: time.Duration(cfg.FetchTimeout), Token: cfg.GitToken, CredentialsFile: cfg.RepoCredentialsFile, SSHKey: cfg.SSHKey, WebhookSecret: cfg.WebhookSecret, Logger: log})
	}
	metrics := server.NewMetrics()
	p.rec = newServeReconciler(cfg, log, sts, p, metrics, addr)
	scfg := p.serverConfig(cfg, log, metrics, enrollTok, adminTok)
	if reg != nil {
		scfg.Registry, scfg.RegistryGC = reg, reg.GC
	}
	p.dash, err = dashboard.New(dashboard.Config{Store: sts.st, History: sts.hist, Lineage: sts.graph, AdminToken: adminTok, ReadToken: cfg.ReadToken,
		OfflineAfter: time.Duration(cfg.OfflineAfter), OnCommand: func(string) { p.rec.Trigger() }, Logger: log})
	if err != nil {
		return nil, err
	}
	scfg.Dashboard = p.dash
	p.srv = server.New(scfg)
	if err := p.srv.Load(ctx); err != nil {
		return nil, err
	}
	if err := p.rec.Load(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// newServeReconciler is the reconciler of cairn serve: admission checks
// the registry and dataset stores unless SkipArtifactCheck.
func newServeReconciler(cfg Config, log *slog.Logger, sts *stores, p *serveParts, metrics *server.Metrics, addr string) *Reconciler {
	ropts := Options{Store: sts.st, Metrics: metrics, Logger: log, Source: p.src, Lineage: sts.graph,
		Publish:      func(ds []store.Desired) { p.srv.Publish(ds) },
		Interval:     time.Duration(cfg.ReconcileInterval),
		OfflineAfter: time.Duration(cfg.OfflineAfter),
		PlainHTTP:    plainHTTP(addr, cfg.TLSCert != ""),
		LeaseRenew:   time.Duration(cfg.LeaseTTL) / 3,
		// Alerts are queued in the step's own transaction; p.alerts
		// (notifier, made first) delivers them.
		Notify:        sts.outbox.Enqueue,
		Profiles:      profileReader(sts.datasets),
		PolicyTimeout: time.Duration(cfg.PolicyTimeout),
		Evaluations:   sts.evaluations,
	}
	if !cfg.SkipArtifactCheck {
		ropts.Inspector = plan.RegistryInspector(plainHTTP(addr, cfg.TLSCert != ""), plan.WithTransport(registryTransport(cfg)))
		ropts.Datasets = plan.StoreChecker(datasetStores(cfg))
	}
	return New(ropts)
}

// serverConfig is the fleet and status API's configuration.
func (p *serveParts) serverConfig(cfg Config, log *slog.Logger, metrics *server.Metrics, enrollTok, adminTok string) server.Config {
	sts := p.sts
	scfg := server.Config{Store: sts.st, EnrollToken: enrollTok, AdminToken: adminTok, ReadToken: cfg.ReadToken,
		AutoAccept: cfg.Enrollment == "auto", Logger: log, Metrics: metrics,
		OfflineAfter: time.Duration(cfg.OfflineAfter), PollWait: time.Duration(cfg.PollInterval),
		RegistryPull: cfg.Registry.Pull, Lineage: lineage.NewHandler(sts.graph), LineageRecord: lineage.NewRecordHandler(sts.graph),
		OnStatus: func(string) { p.rec.Trigger() }, OnCommand: func(string) { p.rec.Trigger() },
		OnStored: p.rec.Observe,
		History:  history.NewHandler(sts.hist),
		OnReport: func(ctx context.Context, id string, rep fleet.StatusReport) {
			now := time.Now()
			sts.hist.Observe(id, rep, now)
			if err := lineage.RecordReport(ctx, sts.graph, id, rep, now.UTC(), p.rec.RolloutID); err != nil {
				log.Warn("record deployments in lineage", "target", id, "err", err)
			}
		},
		Ready: func(ctx context.Context) error {
			_, err := sts.st.Meta(ctx, "ready-check")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
		Source:        func() any { return p.rec.SourceInfo() },
		Alerts:        sts.outbox.List,
		Feedback:      sts.feedback,
		Evaluations:   sts.evaluations,
		DatasetStores: sts.datasets,
	}
	if cfg.RequestRate > 0 {
		scfg.RequestRate, scfg.RequestBurst = rate.Limit(cfg.RequestRate), max(100, int(cfg.RequestRate*10))
	}
	if cfg.EnrollmentRate > 0 {
		scfg.EnrollRate, scfg.EnrollBurst = rate.Limit(cfg.EnrollmentRate), max(20, int(cfg.EnrollmentRate*10))
	}
	if p.src != nil {
		scfg.GitHook = p.src.Webhook()
	}
	return scfg
}

// run serves on ln and runs every loop until ctx ends, then shuts down:
// long-polls end with 304, requests get 10 s to finish.
func (p *serveParts) run(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener, addr string, ready func(string)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := &http.Server{Handler: p.srv.Handler(), ReadHeaderTimeout: server.ReadHeaderTimeout, ReadTimeout: server.ReadTimeout,
		WriteTimeout: server.WriteTimeout, IdleTimeout: server.IdleTimeout, MaxHeaderBytes: server.MaxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return reqCtx }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	go p.srv.Run(ctx)
	go p.dash.Run(ctx, time.Second)
	histDone := make(chan struct{})
	go func() { p.sts.hist.Run(ctx, 5*time.Second); close(histDone) }()
	defer func() { cancel(); <-histDone }() // its last flush before the database closes
	go p.rec.Run(ctx)
	go p.alerts.Run(ctx, p.rec.Leading)
	if p.src != nil {
		go p.src.Run(ctx, p.rec.OnCommit, p.rec.FetchFailed)
	}
	log.Info("cairn serve listening", "addr", addr, "tls", cfg.TLSCert != "", "data", cfg.Data, "repo", redact(cfg.Repo), "branch", cfg.Branch,
		"database", redact(cfg.Database), "registry", registryName(cfg.Registry.Host, addr))
	if ready != nil {
		ready(addr)
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	cancelRequests() // ends long-polls with 304
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// maxConnections is n, or 3/4 of the open-file limit (the rest for the
// database, blobs and Git).
func maxConnections(n int) int {
	if n > 0 {
		return n
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == 0 || rl.Cur > 1<<20 {
		return 10000
	}
	return max(int(rl.Cur)*3/4, 16)
}

func registryName(ext, addr string) string {
	if ext != "" {
		return ext
	}
	return addr + " (built-in)"
}

// redact hides the secret of a URL (source.Redact).
func redact(raw string) string { return source.Redact(raw) }

// registryTransport is the transport of admission's registry requests: it
// trusts the system's roots, cfg.RegistryCAFile and serve's own
// certificate chain (tlsCert, read again at every connection, so that the
// built-in registry on this listener verifies after a renewal too); nil,
// registry/models' default, when neither is set.
func registryTransport(cfg Config) http.RoundTripper {
	if cfg.RegistryCAFile == "" && cfg.TLSCert == "" {
		return nil
	}
	return tlsfiles.RootsTransport(cfg.RegistryCAFile, cfg.TLSCert)
}

// plainHTTP says loopback registries (the built-in one) speak plain HTTP.
// With TLS on, a loopback host on serve's own port (127.0.0.1:P,
// localhost:P, [::1]:P) is the built-in registry behind this listener's
// TLS, or a TCP relay to it on another loopback address.
func plainHTTP(addr string, tlsOn bool) func(string) bool {
	_, port, _ := net.SplitHostPort(addr)
	return func(artifact string) bool {
		host, _, _ := strings.Cut(artifact, "/")
		if h, p, err := net.SplitHostPort(host); tlsOn && err == nil && (host == addr || p == port && tlsfiles.IsLoopback(h)) {
			return false
		}
		if host == addr || strings.HasPrefix(host, "localhost:") || strings.HasPrefix(host, "127.") || strings.HasPrefix(host, "[::1]") {
			return true
		}
		return false
	}
}

// datasetStores are the dataset stores by name: "default" is
// file://DATA/datasets unless configured.
func datasetStores(cfg Config) map[string]string {
	urls := map[string]string{"default": "file://" + filepath.Join(cfg.Data, "datasets")}
	for k, v := range cfg.DatasetStores {
		urls[k] = v
	}
	return urls
}

// openDatasetStores opens the dataset stores of urls by name, each once.
func openDatasetStores(urls map[string]string) feedback.Stores {
	var mu sync.Mutex
	open := map[string]blobs.Store{}
	return func(ctx context.Context, store string) (blobs.Store, error) {
		mu.Lock()
		bs, ok := open[store]
		mu.Unlock()
		if ok {
			return bs, nil
		}
		u, known := urls[store]
		if !known {
			return nil, fmt.Errorf("dataset store %q is not configured (datasetStores)", store)
		}
		bs, err := blobs.Open(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("dataset store %s: %w", store, err)
		}
		mu.Lock()
		open[store] = bs
		mu.Unlock()
		return bs, nil
	}
}

// profileReader reads training profiles from the configured dataset stores.
func profileReader(stores feedback.Stores) ProfileReader {
	return func(ctx context.Context, store, digest string) (*datasets.Profile, error) {
		bs, err := stores(ctx, store)
		if err != nil {
			return nil, err
		}
		return datasets.ReadProfile(ctx, bs, digest)
	}
}
