package reconciler

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
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
	// The data folder holds tokens, the database and the source's
	// credentials: owner only, also when it existed before.
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	if err := os.Chmod(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	enrollTok, gen, err := token(cfg.EnrollToken, filepath.Join(cfg.Data, "enroll-token"))
	if err != nil {
		return err
	}
	if gen {
		log.Info("generated an enrollment token", "file", filepath.Join(cfg.Data, "enroll-token"))
	}
	adminTok, gen, err := token(cfg.AdminToken, filepath.Join(cfg.Data, "admin-token"))
	if err != nil {
		return err
	}
	if gen {
		log.Info("generated an admin token", "file", filepath.Join(cfg.Data, "admin-token"))
	}

	db, err := sqldb.Open(ctx, cfg.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	st, err := store.Open(ctx, db, store.WithLeaseTTL(time.Duration(cfg.LeaseTTL)))
	if err != nil {
		return err
	}
	defer st.Close()
	outbox, err := notify.OpenOutbox(ctx, db)
	if err != nil {
		return err
	}
	alerts := notifier(cfg, log, outbox)
	graph, err := lineage.Open(ctx, db)
	if err != nil {
		return fmt.Errorf("open lineage: %w", err)
	}
	hist, err := history.Open(ctx, db, history.WithOfflineAfter(time.Duration(cfg.OfflineAfter)), history.WithLogger(log))
	if err != nil {
		return fmt.Errorf("open metrics history: %w", err)
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

	metrics := server.NewMetrics()
	var reg *server.Registry
	if cfg.Registry.Host == "" {
		// Opening the blob store creates its S3 bucket when missing; the
		// registry's S3 driver does not.
		if _, err := blobs.Open(ctx, cfg.BlobStore); err != nil {
			ln.Close()
			return fmt.Errorf("blob store: %w", err)
		}
		reg, err = server.NewRegistry(ctx, server.RegistryOptions{Dir: filepath.Join(cfg.Data, "registry"),
			Store: cfg.BlobStore, Secret: server.RegistrySecret(adminTok), Logger: log})
		if err != nil {
			ln.Close()
			return err
		}
	}

	var src *source.Source
	if cfg.Repo != "" {
		src = source.New(source.Config{URL: cfg.Repo, Branch: cfg.Branch, Dir: filepath.Join(cfg.Data, "source"),
			Interval: time.Duration(cfg.Interval), FetchTimeout: time.Duration(cfg.FetchTimeout), Token: cfg.GitToken, SSHKey: cfg.SSHKey, WebhookSecret: cfg.WebhookSecret, Logger: log})
	}
	var srv *server.Server
	ropts := Options{Store: st, Metrics: metrics, Logger: log, Source: src, Lineage: graph,
		Publish:      func(ds []store.Desired) { srv.Publish(ds) },
		Interval:     time.Duration(cfg.ReconcileInterval),
		OfflineAfter: time.Duration(cfg.OfflineAfter),
		PlainHTTP:    plainHTTP(addr, tlsConf != nil),
		LeaseRenew:   time.Duration(cfg.LeaseTTL) / 3,
		Notify:       alerts.Send,
		Profiles:     profileReader(cfg),
	}
	if !cfg.SkipArtifactCheck {
		ropts.Inspector = plan.RegistryInspector(plainHTTP(addr, tlsConf != nil))
		ropts.Datasets = plan.StoreChecker(datasetStores(cfg))
	}
	rec := New(ropts)
	scfg := server.Config{Store: st, EnrollToken: enrollTok, AdminToken: adminTok, ReadToken: cfg.ReadToken,
		AutoAccept: cfg.Enrollment == "auto", Logger: log, Metrics: metrics,
		OfflineAfter: time.Duration(cfg.OfflineAfter), PollWait: time.Duration(cfg.PollInterval),
		RegistryPull: cfg.Registry.Pull, Lineage: lineage.NewHandler(graph), LineageRecord: lineage.NewRecordHandler(graph),
		OnStatus: func(string) { rec.Trigger() }, OnCommand: func(string) { rec.Trigger() },
		History: history.NewHandler(hist),
		OnReport: func(ctx context.Context, id string, rep fleet.StatusReport) {
			hist.Observe(id, rep, time.Now())
			if err := lineage.RecordReport(ctx, graph, id, rep, rec.RolloutID); err != nil {
				log.Warn("record deployments in lineage", "target", id, "err", err)
			}
		},
		Ready: func(ctx context.Context) error {
			_, err := st.Meta(ctx, "ready-check")
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
		Source: func() any { return rec.SourceInfo() },
		Alerts: outbox.List,
	}
	if cfg.RequestRate > 0 {
		scfg.RequestRate, scfg.RequestBurst = rate.Limit(cfg.RequestRate), max(100, int(cfg.RequestRate*10))
	}
	if cfg.EnrollmentRate > 0 {
		scfg.EnrollRate, scfg.EnrollBurst = rate.Limit(cfg.EnrollmentRate), max(20, int(cfg.EnrollmentRate*10))
	}
	if src != nil {
		scfg.GitHook = src.Webhook()
	}
	if reg != nil {
		scfg.Registry, scfg.RegistryGC = reg, reg.GC
	}
	dash, err := dashboard.New(dashboard.Config{Store: st, History: hist, Lineage: graph, AdminToken: adminTok, ReadToken: cfg.ReadToken,
		OfflineAfter: time.Duration(cfg.OfflineAfter), OnCommand: func(string) { rec.Trigger() }, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	scfg.Dashboard = dash
	srv = server.New(scfg)
	if err := srv.Load(ctx); err != nil {
		ln.Close()
		return err
	}
	if err := rec.Load(ctx); err != nil {
		ln.Close()
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reqCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: server.ReadHeaderTimeout, ReadTimeout: server.ReadTimeout,
		WriteTimeout: server.WriteTimeout, IdleTimeout: server.IdleTimeout, MaxHeaderBytes: server.MaxHeaderBytes,
		BaseContext: func(net.Listener) context.Context { return reqCtx }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	go srv.Run(ctx)
	go dash.Run(ctx, time.Second)
	histDone := make(chan struct{})
	go func() { hist.Run(ctx, 5*time.Second); close(histDone) }()
	defer func() { cancel(); <-histDone }() // its last flush before the database closes
	go rec.Run(ctx)
	go alerts.Run(ctx, rec.Leading)
	if src != nil {
		go src.Run(ctx, rec.OnCommit, rec.FetchFailed)
	}
	log.Info("cairn serve listening", "addr", addr, "tls", tlsConf != nil, "data", cfg.Data, "repo", redact(cfg.Repo), "branch", cfg.Branch,
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

// redact hides a password in a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	// A password, or a token as the user of an http(s) URL, is a secret;
	// ssh's user (git@) is not.
	if _, hasPass := u.User.Password(); hasPass || u.Scheme != "ssh" {
		u.User = url.User("redacted")
	}
	return u.String()
}

// plainHTTP says loopback registries (the built-in one) speak plain HTTP.
func plainHTTP(addr string, tlsOn bool) func(string) bool {
	return func(artifact string) bool {
		host, _, _ := strings.Cut(artifact, "/")
		if tlsOn && host == addr {
			return false // the built-in registry, over this server's TLS
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

// profileReader reads training profiles from the configured dataset stores,
// opening each store once.
func profileReader(cfg Config) ProfileReader {
	urls := datasetStores(cfg)
	var mu sync.Mutex
	open := map[string]blobs.Store{}
	return func(ctx context.Context, store, digest string) (*datasets.Profile, error) {
		mu.Lock()
		bs, ok := open[store]
		mu.Unlock()
		if !ok {
			u, known := urls[store]
			if !known {
				return nil, fmt.Errorf("dataset store %q is not configured (datasetStores)", store)
			}
			var err error
			if bs, err = blobs.Open(ctx, u); err != nil {
				return nil, fmt.Errorf("dataset store %s: %w", store, err)
			}
			mu.Lock()
			open[store] = bs
			mu.Unlock()
		}
		return datasets.ReadProfile(ctx, bs, digest)
	}
}
