package reconciler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/cairn-dev/cairn/reconciler/notify"
	"github.com/cairn-dev/cairn/reconciler/source"
)

// Config is cairn serve's configuration: a YAML file (--config), flags and
// environment laid over it. The zero Config runs on embedded defaults.
type Config struct {
	// Listen is the address of every API (default 127.0.0.1:7480).
	Listen string `json:"listen,omitempty"`
	// TLSCert and TLSKey are PEM files of the key pair served over HTTPS
	// (read again when they change); without them cairn serve speaks plain
	// HTTP. ClientCA, when set, verifies the client certificates agents
	// present (tls.VerifyClientCertIfGiven; tokens still authenticate).
	TLSCert  string `json:"tlsCert,omitempty"`
	TLSKey   string `json:"tlsKey,omitempty"`
	ClientCA string `json:"clientCA,omitempty"`
	// Data is the data folder (default ./.cairn).
	Data string `json:"data,omitempty"`
	// Repo is the Git repository (path or URL) and Branch its branch (main).
	Repo   string `json:"repo,omitempty"`
	Branch string `json:"branch,omitempty"`
	// Interval between fetches (1m).
	Interval Duration `json:"interval,omitempty"`
	// FetchTimeout bounds one fetch (2m); a fetch that times out sets the
	// source Ready=False and the next interval tries again.
	FetchTimeout Duration `json:"fetchTimeout,omitempty"`
	// GitToken authenticates http(s) fetches; SSHKey is a key file for ssh://.
	GitToken string `json:"gitToken,omitempty"`
	// RepoCredentialsFile is an owner-only (0600) file holding the http(s)
	// credential of Repo: "USER:PASSWORD" or a token alone (the password
	// of user git). It is read at start and on every fetch and sent as
	// basic auth; it never reaches DATA. serve refuses to start when the
	// file is readable by group or others. The way to keep a Git
	// credential out of the configuration and the process's arguments.
	RepoCredentialsFile string `json:"repoCredentialsFile,omitempty"`
	SSHKey              string `json:"sshKey,omitempty"`
	// WebhookSecret verifies POST /hooks/git.
	WebhookSecret string `json:"webhookSecret,omitempty"`
	// Database is a postgres:// URL or a SQLite path (default DATA/cairn.db).
	Database string `json:"database,omitempty"`
	// BlobStore is the blob store URL of the built-in registry (file:// or
	// s3://; default file://DATA/blobs).
	BlobStore string `json:"blobStore,omitempty"`
	// Registry configures the registry: `registry: HOST` (or `host: HOST`)
	// names an external one; without a host the built-in one serves /v2/.
	Registry RegistryConfig `json:"registry,omitempty"`
	// Tokens; generated into DATA when empty (enroll-token, admin-token).
	EnrollToken string `json:"enrollToken,omitempty"`
	AdminToken  string `json:"adminToken,omitempty"`
	ReadToken   string `json:"readToken,omitempty"`
	// Enrollment is "manual" (default: a target enrolled with the shared
	// token is pending until `cairn target accept`) or "auto" (accepted at
	// once; a name with a credential is still never re-bound).
	Enrollment string `json:"enrollment,omitempty"`
	// EnrollmentRate bounds enrollments per source address per second
	// (default 0.2, burst 20 or ten seconds' worth).
	EnrollmentRate float64 `json:"enrollmentRate,omitempty"`
	// RequestRate bounds requests per source address per second (100,
	// burst ten times that); MaxConnections the connections held open (3/4
	// of the open-file limit) and MaxConnectionsPerAddress those of one
	// source address (256).
	RequestRate              float64 `json:"requestRate,omitempty"`
	MaxConnections           int     `json:"maxConnections,omitempty"`
	MaxConnectionsPerAddress int     `json:"maxConnectionsPerAddress,omitempty"`
	// PollInterval is the agents' long-poll period (30s); OfflineAfter how
	// long without contact makes a target offline (3 poll periods).
	PollInterval Duration `json:"pollInterval,omitempty"`
	OfflineAfter Duration `json:"offlineAfter,omitempty"`
	// ReconcileInterval is the longest time between reconcile passes (5s).
	ReconcileInterval Duration `json:"reconcileInterval,omitempty"`
	// DatasetStores are the named dataset stores (file:// or s3:// URLs)
	// Datasets refer to with spec.store; "default" is file://DATA/datasets
	// unless set. Drift reads training profiles from them.
	DatasetStores map[string]string `json:"datasetStores,omitempty"`
	// SkipArtifactCheck admits releases without asking the registry for
	// the model artifact and the dataset stores for the datasets (a server
	// that cannot reach what its agents pull from). By default a missing
	// artifact or dataset holds the release and a registry that is down
	// delays its admission, as cairn plan reports them.
	SkipArtifactCheck bool `json:"skipArtifactCheck,omitempty"`
	// RegistryCAFile is a PEM file of CAs that admission trusts, besides
	// the system's roots, when it asks a registry for a model artifact (an
	// external registry behind a private CA). The built-in registry on
	// serve's own TLS listener is trusted through tlsCert without it.
	RegistryCAFile string `json:"registryCAFile,omitempty"`
	// PolicyTimeout bounds the evaluation of one release's policies (5s);
	// a release whose policies take longer is denied and keeps its
	// previously admitted version.
	PolicyTimeout Duration `json:"policyTimeout,omitempty"`
	// LeaseTTL is how long the leader lease outlives its last renewal
	// (10s; renewed every third of it): replicas on one PostgreSQL replace
	// a leader that stopped renewing (killed, frozen, cut off) after it.
	LeaseTTL Duration `json:"leaseTTL,omitempty"`
	// AlertBackoff is the first wait before an alert delivery is retried
	// (5s; doubling up to 1h) and AlertMaxAge how long it is retried (24h).
	AlertBackoff Duration `json:"alertBackoff,omitempty"`
	AlertMaxAge  Duration `json:"alertMaxAge,omitempty"`
	// Secrets are named secrets Alerts refer to (webhook secretRef).
	Secrets map[string]string `json:"secrets,omitempty"`
	// CommitStatuses post each release's rollout outcome as a status of
	// the commit it was admitted from (GitHub or GitLab), delivered through
	// the alert outbox like the Alerts' webhooks.
	CommitStatuses []notify.StatusProvider `json:"commitStatuses,omitempty"`
}

// RegistryConfig is the registry section of the configuration.
type RegistryConfig struct {
	// Host is an external registry; empty serves the built-in one.
	Host string `json:"host,omitempty"`
	// Pull is who may pull from the built-in registry: anonymous (default)
	// or token (the admin or read-only token, a target's credential, or
	// the client certificate of an accepted target).
	// Push and delete always need the admin token.
	Pull string `json:"pull,omitempty"`
}

// UnmarshalJSON reads the section, or a bare host (`registry: HOST`).
func (r *RegistryConfig) UnmarshalJSON(b []byte) error {
	var host string
	if err := json.Unmarshal(b, &host); err == nil {
		*r = RegistryConfig{Host: host}
		return nil
	}
	type plain RegistryConfig
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	switch p.Pull {
	case "", "anonymous", "token":
	default:
		return fmt.Errorf("registry.pull %q: want anonymous or token", p.Pull)
	}
	*r = RegistryConfig(p)
	return nil
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalJSON reads "30s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		var n float64
		if _, serr := fmt.Sscanf(s, "%g", &n); serr != nil {
			return fmt.Errorf("duration %s: %w", s, err)
		}
		v = time.Duration(n * float64(time.Second))
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as "30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// LoadConfig reads a YAML configuration file strictly.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if source.HasURLCredentials(c.Repo) || c.GitToken != "" {
		// A Git credential in the file: the file is a secret.
		if err := source.CheckPrivate(path, "config file"); err != nil {
			return c, fmt.Errorf("%w (it holds the Git credential in repo or gitToken; or move it to repoCredentialsFile)", err)
		}
	}
	return c, nil
}

// Check reports settings that have no meaning.
func (c *Config) Check() error {
	switch c.Enrollment {
	case "", "manual", "auto":
	default:
		return fmt.Errorf("enrollment %q: want manual or auto", c.Enrollment)
	}
	if c.RequestRate < 0 || c.MaxConnections < 0 || c.MaxConnectionsPerAddress < 0 {
		return fmt.Errorf("requestRate, maxConnections and maxConnectionsPerAddress must not be negative")
	}
	if c.EnrollmentRate < 0 {
		return fmt.Errorf("enrollmentRate %g: want a positive rate", c.EnrollmentRate)
	}
	if n := countTrue(source.HasURLCredentials(c.Repo), c.GitToken != "", c.RepoCredentialsFile != ""); n > 1 {
		return fmt.Errorf("the Git credential is given %d ways (in the repo URL, gitToken, repoCredentialsFile): give it one", n)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("tlsCert and tlsKey go together")
	}
	if c.ClientCA != "" && c.TLSCert == "" {
		return fmt.Errorf("clientCA needs tlsCert and tlsKey")
	}
	names := map[string]bool{}
	for i := range c.CommitStatuses {
		p := &c.CommitStatuses[i]
		if err := p.Check(); err != nil {
			return err
		}
		if names[p.Name] {
			return fmt.Errorf("commit status %s: the name is taken by another provider (set name)", p.Name)
		}
		names[p.Name] = true
	}
	return nil
}

func countTrue(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// Defaults fills what is unset.
func (c *Config) Defaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7480"
	}
	if c.Data == "" {
		c.Data = ".cairn"
	}
	if c.Branch == "" {
		c.Branch = "main"
	}
	if c.Interval <= 0 {
		c.Interval = Duration(time.Minute)
	}
	if c.Database == "" {
		c.Database = filepath.Join(c.Data, "cairn.db")
	}
	if c.BlobStore == "" {
		abs, err := filepath.Abs(filepath.Join(c.Data, "blobs"))
		if err != nil {
			abs = filepath.Join(c.Data, "blobs")
		}
		c.BlobStore = "file://" + abs
	}
	if c.PollInterval <= 0 {
		c.PollInterval = Duration(30 * time.Second)
	}
	if c.OfflineAfter <= 0 {
		c.OfflineAfter = 3 * c.PollInterval
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = Duration(5 * time.Second)
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = Duration(10 * time.Second)
	}
}
