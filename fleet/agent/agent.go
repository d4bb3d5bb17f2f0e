package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/internal/atomicfile"
	"github.com/cairn-dev/cairn/registry/models"
)

// API is the fleet API the agent talks to; *fleet.Client implements it.
type API interface {
	Enroll(ctx context.Context, req fleet.EnrollRequest) (*fleet.EnrollResponse, error)
	Desired(ctx context.Context, id, cred, etag string, wait time.Duration) (*fleet.DesiredState, bool, error)
	ReportStatus(ctx context.Context, id, cred string, r fleet.StatusReport) error
}

var _ API = (*fleet.Client)(nil)

// Defaults of Config.
const (
	DefaultPollWait   = 30 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 5 * time.Minute
	DefaultLogSize    = 50

	// What a report carries at most (the server refuses more).
	maxMessage = 2000
	maxMetrics = 200
)

// Hooks let tests and the fleet simulator observe and disturb the agent.
type Hooks struct {
	// Step is called before each install step of a release ("downloading",
	// "activating", "verifying"); an error stops the install there as a crash
	// would (nothing is cleaned up).
	Step func(release, step string) error
	// Health, when set, wraps the release's health check: check runs the
	// real one.
	Health func(ctx context.Context, release, digest, modelDir string, check func() error) error
	// Reported is called after each status report the server accepted.
	Reported func(fleet.StatusReport)
}

// Config configures an Agent. Root and API are required.
type Config struct {
	// Root holds the identity, journal, model slots and the layer cache.
	Root string
	// PullHoldout restores an evaluation run's holdout dataset (nil: the
	// agent reports every run it is given as one it cannot evaluate).
	PullHoldout HoldoutFunc
	// Name is the target's name at enrollment (default: the hostname).
	Name string
	// Labels and Facts are reported at enrollment and with every status.
	Labels map[string]string
	Facts  fleet.Facts
	// EnrollToken is the fleet's enrollment token (or a pre-authorised
	// one), used once, and again if the server forgets the target; a
	// re-enrollment also proves the old credential, which rotates it
	// without an admin.
	EnrollToken string
	// ClientCert says the API client presents a client certificate: with
	// cairn serve --client-ca, one naming this target enrolls it without
	// a token.
	ClientCert bool
	API        API
	// Fetcher pulls models (default: PullFetcher with the cache under Root
	// and PullLimits).
	Fetcher Fetcher
	// PullLimits bound what an artifact may make the default Fetcher write
	// (unpack ratio, entries, disk reserve; zero: models' defaults). Going
	// over one fails that digest for good; the previous model keeps serving.
	PullLimits models.Limits
	// RuntimeRoot, when set, re-roots absolute runtime.path links under it
	// (several simulated devices on one machine, or a non-root agent).
	RuntimeRoot string
	// PlainHTTP forces plain HTTP to registries (loopback registries).
	PlainHTTP bool
	// CacheMax bounds the layer cache beyond what the active, previous and
	// in-flight models are made of, in bytes (default: twice the largest
	// model pulled); collected after each pass over the desired models.
	CacheMax int64
	// PollWait is how long a desired-state long-poll waits (default 30s).
	PollWait time.Duration
	// MinBackoff and MaxBackoff bound the retry delays when the server or
	// a registry cannot be reached (defaults 1s and 5m, with jitter).
	MinBackoff, MaxBackoff time.Duration
	// HTTPClient is used for HTTP health checks and runtime metrics.
	HTTPClient *http.Client
	// LogSize bounds the deployment log entries kept until a report
	// delivers them (default 50; the oldest are dropped when offline).
	LogSize int
	Logf    func(format string, args ...any)
	Hooks   Hooks
	// Driver, when set, runs every release instead of the files driver
	// (a Kubernetes cluster: fleet/agent/kube, linked only into cmd/cairn).
	Driver Driver
}

// Driver runs releases somewhere other than the agent's own folders. Apply
// is called after every poll with the whole desired state: it brings each
// release to its desired model, removes what releases no longer listed left
// behind, and returns the status of each release it runs. The agent
// reports each change of status; an error is retried with backoff.
type Driver interface {
	Apply(ctx context.Context, models []fleet.DesiredModel) ([]fleet.ReleaseStatus, error)
}

// KeepingDriver is a Driver that can leave alone the releases a desired
// state keeps (fleet.DesiredState.Keep) although it does not list them; a
// Driver without it removes them as its own rules say.
type KeepingDriver interface {
	ApplyKeeping(ctx context.Context, models []fleet.DesiredModel, keep []string) ([]fleet.ReleaseStatus, error)
}

// Identity is the target's enrollment, kept in ROOT/identity.json (0600).
type Identity struct {
	ID         string `json:"id"`
	Credential string `json:"credential"`
	Name       string `json:"name"`
}

// Agent drives one target. It is not safe to run two agents on one root.
type Agent struct {
	cfg     Config
	fetcher Fetcher
	hc      *http.Client
	sys     systemMetrics

	mu     sync.Mutex
	id     Identity
	j      *journal
	status map[string]fleet.ReleaseStatus
	log    []fleet.LogEntry  // deployment steps not yet delivered
	health map[string]string // release → HTTP health URL, for runtime metrics
	inputs map[string]string // release → runtime metrics URL, for input histograms
	// scraped is the last cumulative input scrape per release the server
	// accepted a report of: the next window counts from there.
	scraped map[string]inputScrape

	evalMu      sync.Mutex
	evalBusy    bool                              // a goroutine runs evaluations
	evalDone    map[string]bool                   // runs reported (or refused)
	evalReports map[string]fleet.EvaluationReport // runs made, not reported yet
	kept        map[string]bool                   // releases left installed by the desired state's keep list, logged once
}

// New checks the configuration and loads the journal.
func New(cfg Config) (*Agent, error) {
	if cfg.Root == "" {
		return nil, errors.New("agent: root folder is required")
	}
	if cfg.API == nil {
		return nil, errors.New("agent: fleet API is required")
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = DefaultPollWait
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.LogSize <= 0 {
		cfg.LogSize = DefaultLogSize
	}
	if cfg.Logf == nil {
		cfg.Logf = log.Printf
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("agent: root: %w", err)
	}
	cfg.Root = root
	if cfg.RuntimeRoot != "" {
		if cfg.RuntimeRoot, err = filepath.Abs(cfg.RuntimeRoot); err != nil {
			return nil, fmt.Errorf("agent: runtime root: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "models"), 0o755); err != nil {
		return nil, fmt.Errorf("agent: create root: %w", err)
	}
	a := &Agent{cfg: cfg, fetcher: cfg.Fetcher, hc: cfg.HTTPClient,
		status: map[string]fleet.ReleaseStatus{}, health: map[string]string{},
		inputs: map[string]string{}, scraped: map[string]inputScrape{}, kept: map[string]bool{},
		evalDone: map[string]bool{}, evalReports: map[string]fleet.EvaluationReport{}}
	if a.fetcher == nil {
		a.fetcher = &PullFetcher{CacheDir: filepath.Join(root, "cache"), Limits: cfg.PullLimits}
	}
	if pf, ok := a.fetcher.(*PullFetcher); ok && pf.Logf == nil {
		pf.Logf = cfg.Logf
	}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: 30 * time.Second}
	}
	if a.j, err = loadJournal(a.journalPath()); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Agent) journalPath() string  { return filepath.Join(a.cfg.Root, "journal.json") }
func (a *Agent) identityPath() string { return filepath.Join(a.cfg.Root, "identity.json") }

func (a *Agent) saveJournal() error {
	if err := a.j.save(a.journalPath()); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}

// Identity returns the target's identity once enrolled.
func (a *Agent) Identity() Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Run recovers any interrupted install, enrolls if needed, then polls the
// desired state and applies it until ctx ends. Unreachable servers and
// registries are retried with exponential backoff and jitter.
func (a *Agent) Run(ctx context.Context) error {
	unlock, err := lockRoot(a.cfg.Root)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.Recover(ctx); err != nil {
		return err
	}
	if err := a.enroll(ctx); err != nil {
		return err
	}
	conn := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff}
	inst := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff}
	var desired *fleet.DesiredState
	etag, retry := "", false
	for ctx.Err() == nil {
		wait := a.cfg.PollWait
		if retry {
			wait = inst.next()
		}
		id := a.Identity()
		ds, changed, err := a.cfg.API.Desired(ctx, id.ID, id.Credential, etag, wait)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, fleet.ErrUnauthorized) || errors.Is(err, fleet.ErrNotFound) {
				if rerr := a.reenroll(ctx, err); rerr == nil {
					etag = ""
					continue
				}
			}
			d := conn.next()
			if errors.Is(err, fleet.ErrPending) {
				d = min(d, 30*time.Second)
				a.cfg.Logf("agent: waiting for an admin to accept %s (cairn target accept %s); asking again in %s", id.ID, id.ID, d.Round(time.Millisecond))
				sleep(ctx, d)
				continue
			}
			a.cfg.Logf("agent: %v; retrying in %s", err, d.Round(time.Millisecond))
			sleep(ctx, d)
			continue
		}
		conn.reset()
		if changed && ds != nil {
			desired, etag = ds, ds.ETag
			if len(ds.Evaluations) > 0 {
				a.cfg.Logf("agent: desired state %s: %d models, %d evaluations", etag, len(ds.Models), len(ds.Evaluations))
			} else {
				a.cfg.Logf("agent: desired state %s: %d models", etag, len(ds.Models))
			}
		}
		retry = false
		if desired != nil {
			if err := a.Apply(ctx, desired); err != nil {
				if ctx.Err() != nil {
					break
				}
				retry = true
				a.cfg.Logf("agent: %v (will retry)", err)
			} else {
				inst.reset()
			}
		}
		if ctx.Err() == nil {
			a.Report(ctx)
			a.SendFeedback(ctx, desired)
			a.Evaluate(ctx, desired)
		}
	}
	return nil
}

// lockRoot takes an exclusive lock on ROOT/agent.lock so that two agents
// never drive one root; the kernel drops it when the process dies.
func lockRoot(root string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(root, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: lock root: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: another agent runs on %s: %w", root, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// enroll loads the saved identity or enrolls with the token.
func (a *Agent) enroll(ctx context.Context) error {
	b, err := os.ReadFile(a.identityPath())
	if err == nil {
		var id Identity
		if err := json.Unmarshal(b, &id); err != nil {
			return fmt.Errorf("agent: read identity %s: %w", a.identityPath(), err)
		}
		if id.ID != "" && id.Credential != "" {
			a.mu.Lock()
			a.id = id
			a.mu.Unlock()
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("agent: read identity: %w", err)
	}
	return a.enrollWith(ctx, "")
}

// enrollWith enrolls with the token and, when re-enrolling, the old credential.
func (a *Agent) enrollWith(ctx context.Context, oldCred string) error {
	if a.cfg.EnrollToken == "" && oldCred == "" && !a.cfg.ClientCert {
		return errors.New("agent: not enrolled yet and no enrollment token or client certificate given")
	}
	bo := backoff{min: a.cfg.MinBackoff, max: a.cfg.MaxBackoff}
	for {
		resp, err := a.cfg.API.Enroll(ctx, fleet.EnrollRequest{Token: a.cfg.EnrollToken, Credential: oldCred, Name: a.cfg.Name, Labels: a.cfg.Labels, Facts: a.cfg.Facts})
		if err == nil {
			if resp.Pending {
				a.cfg.Logf("agent: enrolled as %s, pending an admin's acceptance (cairn target accept %s)", a.cfg.Name, resp.ID)
			}
			id := Identity{ID: resp.ID, Credential: resp.Credential, Name: a.cfg.Name}
			b, _ := json.MarshalIndent(id, "", "  ")
			if err := atomicfile.WriteFile(a.identityPath(), b, 0o600); err != nil {
				return fmt.Errorf("agent: save identity: %w", err)
			}
			a.mu.Lock()
			a.id = id
			a.mu.Unlock()
			a.cfg.Logf("agent: enrolled as %s (id %s)", a.cfg.Name, id.ID)
			return nil
		}
		if errors.Is(err, fleet.ErrUnauthorized) || errors.Is(err, fleet.ErrForbidden) || errors.Is(err, fleet.ErrBadRequest) {
			return fmt.Errorf("agent: enroll %s: %w", a.cfg.Name, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d := bo.next()
		a.cfg.Logf("agent: enroll: %v; retrying in %s", err, d.Round(time.Millisecond))
		sleep(ctx, d)
	}
}

// reenroll enrolls again when the server no longer knows the credential.
func (a *Agent) reenroll(ctx context.Context, cause error) error {
	if a.cfg.EnrollToken == "" && !a.cfg.ClientCert {
		return cause
	}
	a.cfg.Logf("agent: server rejected the credential (%v); enrolling again", cause)
	old := a.Identity().Credential
	if err := os.Remove(a.identityPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return a.enrollWith(ctx, old)
}

// Apply brings every release of the desired state to its model, in order.
// It returns an error when something should be retried (download failed,
// disk error); health failures are reported, not retried.
func (a *Agent) Apply(ctx context.Context, ds *fleet.DesiredState) error {
	if a.cfg.Driver != nil {
		return a.applyDriver(ctx, ds)
	}
	models := slices.Clone(ds.Models)
	slices.SortFunc(models, func(x, y fleet.DesiredModel) int {
		if x.Release < y.Release {
			return -1
		}
		if x.Release > y.Release {
			return 1
		}
		return 0
	})
	var errs []error
	desired := map[string]string{}
	for _, dm := range models {
		desired[dm.Release] = dm.Digest
		if err := a.install(ctx, dm); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", dm.Release, err))
		}
	}
	if err := a.prune(ctx, desired, ds.Keep); err != nil {
		errs = append(errs, err)
	}
	a.collect(desired)
	return errors.Join(errs...)
}

// applyDriver hands the desired state to the driver and reports the
// statuses that changed; releases it no longer runs are forgotten.
func (a *Agent) applyDriver(ctx context.Context, ds *fleet.DesiredState) error {
	// Runtime metrics the agent can reach (a Service URL from inside the
	// cluster) feed gates and drift as on devices.
	a.mu.Lock()
	clear(a.health)
	clear(a.inputs)
	for _, dm := range ds.Models {
		if hc := dm.Runtime.HealthCheck; hc != nil && hc.HTTP != "" {
			a.health[dm.Release] = hc.HTTP
		} else if dm.Runtime.Metrics != "" {
			a.health[dm.Release] = dm.Runtime.Metrics
		}
		if dm.Runtime.Metrics != "" {
			a.inputs[dm.Release] = dm.Runtime.Metrics
		}
	}
	a.mu.Unlock()
	var sts []fleet.ReleaseStatus
	var err error
	if kd, ok := a.cfg.Driver.(KeepingDriver); ok {
		sts, err = kd.ApplyKeeping(ctx, ds.Models, ds.Keep)
	} else {
		sts, err = a.cfg.Driver.Apply(ctx, ds.Models)
	}
	keep := map[string]bool{}
	for _, rel := range ds.Keep {
		keep[rel] = true // kept: its last status stands
	}
	for _, st := range sts {
		keep[st.Release] = true
		a.mu.Lock()
		old, ok := a.status[st.Release]
		a.mu.Unlock()
		if !ok || old != st {
			a.setPhase(ctx, st)
		}
	}
	a.mu.Lock()
	for rel := range a.status {
		if !keep[rel] {
			delete(a.status, rel)
		}
	}
	a.mu.Unlock()
	return err
}

// setPhase records a release's phase and logs it, then reports at once.
func (a *Agent) setPhase(ctx context.Context, rs fleet.ReleaseStatus) {
	if len(rs.Message) > maxMessage {
		rs.Message = rs.Message[:maxMessage] + "…"
	}
	a.mu.Lock()
	a.status[rs.Release] = rs
	a.log = append(a.log, fleet.LogEntry{Time: time.Now().UTC(), Release: rs.Release, Phase: rs.Phase, Message: rs.Message})
	if over := len(a.log) - a.cfg.LogSize; over > 0 {
		a.log = slices.Delete(a.log, 0, over)
	}
	a.mu.Unlock()
	a.cfg.Logf("agent: %s: %s %s", rs.Release, rs.Phase, rs.Message)
	a.Report(ctx)
}

// Status returns the agent's current view of each release.
func (a *Agent) Status() []fleet.ReleaseStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]fleet.ReleaseStatus, 0, len(a.status))
	for _, s := range a.status {
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y fleet.ReleaseStatus) int {
		if x.Release < y.Release {
			return -1
		}
		return 1
	})
	return out
}

// Report sends the status, metrics and deployment log; errors are logged
// (the next heartbeat sends it again).
func (a *Agent) Report(ctx context.Context) {
	rep, scrapes := a.buildReport(ctx)
	id := a.Identity()
	if id.ID == "" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.cfg.API.ReportStatus(rctx, id.ID, id.Credential, rep); err != nil {
		if ctx.Err() == nil {
			a.cfg.Logf("agent: report status: %v", err)
		}
		return
	}
	a.mu.Lock()
	a.log = a.log[min(dropSent(a.log, rep.Log), len(a.log)):]
	// The windows sent are delivered: the next ones count from these scrapes.
	for rel, sc := range scrapes {
		a.scraped[rel] = sc
	}
	a.mu.Unlock()
	if a.cfg.Hooks.Reported != nil {
		a.cfg.Hooks.Reported(rep)
	}
}

func (a *Agent) buildReport(ctx context.Context) (fleet.StatusReport, map[string]inputScrape) {
	facts := a.cfg.Facts
	// The machine's own metrics describe a device; a driver's agent runs
	// beside its cluster, so they would mislead.
	metrics := map[string]float64{}
	if a.cfg.Driver == nil {
		metrics = a.sys.sample()
	}
	a.mu.Lock()
	// The server appends the log entries of each report: send those it has
	// not accepted yet.
	rep := fleet.StatusReport{Time: time.Now().UTC(), Facts: &facts, Log: slices.Clone(a.log)}
	// The runtime's metrics: a release's runtime.metrics URL where set,
	// else /metrics next to its HTTP health check.
	var urls, explicit []string
	for _, u := range a.health {
		urls = append(urls, runtimeMetricsURL(u))
	}
	for _, u := range a.inputs {
		explicit = append(explicit, u)
	}
	a.mu.Unlock()
	rep.Releases = a.Status()
	slices.Sort(urls)
	slices.Sort(explicit)
	for _, mu := range append(explicit, urls...) {
		if mu == "" {
			continue
		}
		m, feats, err := fetchRuntimeMetrics(ctx, a.hc, mu)
		if err != nil {
			continue
		}
		for k, v := range m {
			if len(metrics) >= maxMetrics || len(k) > 128 {
				break
			}
			metrics[k] = v
		}
		if len(feats) > 0 && len(feats) <= maxMetrics && rep.Features == nil {
			rep.Features = feats
		}
		break
	}
	rep.Metrics = metrics
	return rep, a.scrapeInputs(ctx, rep.Releases)
}

// scrapeInputs reads the input histograms of every release whose runtime
// exports them (runtime.metrics) and is healthy, and sets on its status
// the window since the last delivered scrape of the same model. It
// returns the scrapes, to keep once the report is delivered.
func (a *Agent) scrapeInputs(ctx context.Context, rels []fleet.ReleaseStatus) map[string]inputScrape {
	a.mu.Lock()
	urls := maps.Clone(a.inputs)
	prev := maps.Clone(a.scraped)
	a.mu.Unlock()
	out := map[string]inputScrape{}
	for i := range rels {
		rs := &rels[i]
		u := urls[rs.Release]
		if u == "" || rs.Digest == "" || (rs.Phase != fleet.PhaseHealthy && rs.Phase != fleet.PhaseRolledBack) {
			continue
		}
		now := time.Now().UTC()
		cur, err := fetchInputs(ctx, a.hc, u)
		if err != nil {
			a.cfg.Logf("agent: release %s: %v", rs.Release, err)
			continue
		}
		out[rs.Release] = inputScrape{digest: rs.Digest, at: now, inputs: cur}
		p, ok := prev[rs.Release]
		if !ok || p.digest != rs.Digest {
			continue // the first scrape of a model is the baseline
		}
		if d := inputDelta(p.inputs, cur); len(d) > 0 {
			rs.Inputs = &fleet.InputWindow{Start: p.at, End: now, Features: d}
		}
	}
	return out
}

// dropSent is how many entries at the head of log were sent: the sent
// entries, minus any the bound on the log dropped since.
func dropSent(log, sent []fleet.LogEntry) int {
	if len(sent) == 0 {
		return 0
	}
	lastSent := sent[len(sent)-1]
	for i := len(log) - 1; i >= 0; i-- {
		if log[i] == lastSent {
			return i + 1
		}
	}
	return 0
}

// backoff is exponential with full jitter between half and all of the delay.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	return half + time.Duration(rand.Int64N(int64(half)+1))
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
