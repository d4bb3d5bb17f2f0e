package main

import (
	"log/slog"
	"math"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/cairn-dev/cairn/internal/memlimit"
	"github.com/cairn-dev/cairn/reconciler"
)

func newServeCmd() *cobra.Command {
	var (
		file   string
		flag   reconciler.Config
		intv   time.Duration
		memory string
	)
	cmd := &cobra.Command{
		Use:   "serve [--repo URL|PATH] [--config FILE]",
		Short: "Run the reconciler, fleet API, status API, webhook receiver and built-in registry",
		Long: `Run the reconciler: follow a Git repository, admit each commit through the
policies, roll releases out to enrolled targets, and serve the fleet API, the
status API, POST /hooks/git, /metrics and a built-in OCI registry at /v2/.

With no configuration it runs on embedded defaults under ./.cairn: SQLite,
a blob folder, generated enrollment and admin tokens (DATA/enroll-token,
DATA/admin-token). Environment: CAIRN_ENROLL_TOKEN, CAIRN_ADMIN_TOKEN,
CAIRN_READ_TOKEN, CAIRN_WEBHOOK_SECRET, CAIRN_GIT_TOKEN,
CAIRN_REPO_CREDENTIALS_FILE, CAIRN_DATABASE.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg reconciler.Config
			if file != "" {
				c, err := reconciler.LoadConfig(file)
				if err != nil {
					return err
				}
				cfg = c
			}
			env := func(dst *string, name string) {
				if v := os.Getenv(name); v != "" {
					*dst = v
				}
			}
			env(&cfg.EnrollToken, "CAIRN_ENROLL_TOKEN")
			env(&cfg.AdminToken, "CAIRN_ADMIN_TOKEN")
			env(&cfg.ReadToken, "CAIRN_READ_TOKEN")
			env(&cfg.WebhookSecret, "CAIRN_WEBHOOK_SECRET")
			env(&cfg.GitToken, "CAIRN_GIT_TOKEN")
			env(&cfg.RepoCredentialsFile, "CAIRN_REPO_CREDENTIALS_FILE")
			env(&cfg.Database, "CAIRN_DATABASE")
			set := func(dst *string, name, v string) {
				if cmd.Flags().Changed(name) {
					*dst = v
				}
			}
			set(&cfg.Listen, "listen", flag.Listen)
			set(&cfg.Data, "data", flag.Data)
			set(&cfg.Repo, "repo", flag.Repo)
			set(&cfg.Branch, "branch", flag.Branch)
			set(&cfg.Database, "database", flag.Database)
			set(&cfg.BlobStore, "blob-store", flag.BlobStore)
			set(&cfg.EnrollToken, "enroll-token", flag.EnrollToken)
			set(&cfg.WebhookSecret, "webhook-secret", flag.WebhookSecret)
			set(&cfg.SSHKey, "ssh-key", flag.SSHKey)
			set(&cfg.RepoCredentialsFile, "repo-credentials-file", flag.RepoCredentialsFile)
			set(&cfg.Enrollment, "enrollment", flag.Enrollment)
			set(&cfg.TLSCert, "tls-cert", flag.TLSCert)
			set(&cfg.TLSKey, "tls-key", flag.TLSKey)
			set(&cfg.ClientCA, "client-ca", flag.ClientCA)
			if cmd.Flags().Changed("enrollment-rate") {
				cfg.EnrollmentRate = flag.EnrollmentRate
			}
			if cmd.Flags().Changed("request-rate") {
				cfg.RequestRate = flag.RequestRate
			}
			if cmd.Flags().Changed("max-connections-per-address") {
				cfg.MaxConnectionsPerAddress = flag.MaxConnectionsPerAddress
			}
			if cmd.Flags().Changed("interval") {
				cfg.Interval = reconciler.Duration(intv)
			}
			log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			if err := setServeMemoryLimit(memory, log); err != nil {
				return err
			}
			return reconciler.Serve(cmd.Context(), cfg, log, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&file, "config", "", "YAML configuration file")
	f.StringVar(&flag.Listen, "listen", "127.0.0.1:7480", "address of the APIs, webhook, metrics and built-in registry")
	f.StringVar(&flag.Data, "data", ".cairn", "data folder (SQLite database, blobs, tokens, Git clone)")
	f.StringVar(&flag.Repo, "repo", "", "Git repository to follow: a path, file://, http(s):// or ssh:// URL")
	f.StringVar(&flag.Branch, "branch", "main", "branch to follow")
	f.DurationVar(&intv, "interval", time.Minute, "time between fetches (with ±10% jitter)")
	f.StringVar(&flag.Database, "database", "", "postgres:// URL or SQLite path (default DATA/cairn.db)")
	f.StringVar(&flag.BlobStore, "blob-store", "", "blob store of the built-in registry: file:///path or s3://bucket/prefix?endpoint=… (default DATA/blobs)")
	f.StringVar(&flag.EnrollToken, "enroll-token", "", "enrollment token agents present (default: generated into DATA/enroll-token)")
	f.StringVar(&flag.WebhookSecret, "webhook-secret", "", "HMAC secret of POST /hooks/git (without one, only loopback may trigger)")
	f.StringVar(&flag.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS with; read again when the file changes (needs --tls-key)")
	f.StringVar(&flag.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&flag.ClientCA, "client-ca", "", "PEM CA that client certificates must chain to when a client presents one (tokens still authenticate)")
	f.StringVar(&flag.SSHKey, "ssh-key", "", "private key file for ssh:// repositories")
	f.StringVar(&flag.RepoCredentialsFile, "repo-credentials-file", "", "owner-only (0600) file with the http(s) credential of --repo: USER:PASSWORD or a token; read on every fetch")
	f.StringVar(&flag.Enrollment, "enrollment", "manual", "manual: targets enrolled with the shared token wait for `cairn target accept`; auto: accepted at once")
	f.Float64Var(&flag.RequestRate, "request-rate", 100, "requests per second allowed from one source address (burst: 10s' worth)")
	f.IntVar(&flag.MaxConnectionsPerAddress, "max-connections-per-address", 256, "connections one source address may hold open")
	f.Float64Var(&flag.EnrollmentRate, "enrollment-rate", 0.2, "enrollments per second allowed from one source address (burst: 20 or 10s' worth)")
	f.StringVar(&memory, "memory-limit", "auto", "soft memory limit of the Go runtime (a size such as 768MiB, or off); auto: min(90%, limit−96MiB) of the cgroup's memory limit (at least half) when there is one, else none. GOMEMLIMIT, when set, wins")
	return cmd
}

// setServeMemoryLimit applies --memory-limit flag, unless GOMEMLIMIT is
// set: that wins, and then a flag that does not parse is only warned about.
func setServeMemoryLimit(flag string, log *slog.Logger) error {
	limit, warn, err := memlimit.ForServe(flag)
	if err != nil {
		if os.Getenv("GOMEMLIMIT") == "" {
			return err
		}
		log.Warn("--memory-limit ignored: GOMEMLIMIT is set", "error", err)
	} else if warn != "" && os.Getenv("GOMEMLIMIT") == "" {
		log.Warn("soft memory limit: little headroom", "detail", warn)
	}
	if got := memlimit.Set(limit); got < math.MaxInt64 {
		log.Info("soft memory limit", "bytes", got, "from", memorySource(flag))
	}
	return nil
}

// memorySource says where serve's soft memory limit came from.
func memorySource(flag string) string {
	switch {
	case os.Getenv("GOMEMLIMIT") != "":
		return "GOMEMLIMIT"
	case flag == "auto":
		return "cgroup"
	}
	return "--memory-limit"
}
