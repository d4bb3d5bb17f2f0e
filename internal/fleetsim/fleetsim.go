package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
)

// ErrOffline is what a device's fleet API calls fail with while offline.
var ErrOffline = errors.New("fleetsim: device offline")

// errCrash stops an install the way a crash would.
var errCrash = errors.New("fleetsim: crashed")

// Options configure a simulated fleet.
type Options struct {
	// API returns the fleet API device i talks to (for example
	// fleet.NewClient(url)); required.
	API func(i int) agent.API
	// Root is the folder under which each device gets ROOT/<name>.
	Root        string
	EnrollToken string
	// Name, Labels and Facts describe device i (defaults: sim-0000,
	// no labels, linux/amd64 with 4 GiB).
	Name   func(i int) string
	Labels func(i int) map[string]string
	Facts  func(i int) fleet.Facts
	// Fetcher pulls models (default: each device's own models.Pull cache).
	Fetcher   func(i int) agent.Fetcher
	PlainHTTP bool
	// PollWait, MinBackoff and MaxBackoff are passed to every agent
	// (defaults 2s, 100ms, 2s: a simulated fleet moves fast).
	PollWait, MinBackoff, MaxBackoff time.Duration
	Logf                             func(format string, args ...any)
}

// Fleet is a set of simulated devices.
type Fleet struct {
	Devices []*Device
}

// Device is one simulated target: an agent with its own root.
type Device struct {
	Name string
	Root string

	cfg agent.Config

	mu         sync.Mutex
	offline    bool
	failHealth bool
	crashAt    string
	agent      *agent.Agent
	cancel     context.CancelFunc
	done       chan struct{}
	runErr     error
	reports    int
}

// New prepares n devices; Start runs them.
func New(n int, o Options) (*Fleet, error) {
	if o.API == nil {
		return nil, errors.New("fleetsim: Options.API is required")
	}
	if o.Root == "" {
		return nil, errors.New("fleetsim: Options.Root is required")
	}
	if o.PollWait <= 0 {
		o.PollWait = 2 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	f := &Fleet{}
	for i := range n {
		name := fmt.Sprintf("sim-%04d", i)
		if o.Name != nil {
			name = o.Name(i)
		}
		facts := fleet.Facts{Arch: "amd64", OS: "linux", OSVersion: "12", Memory: 4 << 30, CPUs: 4, Hostname: name, TimeZone: "UTC"}
		if o.Facts != nil {
			facts = o.Facts(i)
		}
		d := &Device{Name: name, Root: filepath.Join(o.Root, name)}
		d.cfg = agent.Config{Root: d.Root, Name: name, Facts: facts, EnrollToken: o.EnrollToken,
			API: &deviceAPI{d: d, inner: o.API(i)}, PlainHTTP: o.PlainHTTP,
			PollWait: o.PollWait, MinBackoff: o.MinBackoff, MaxBackoff: o.MaxBackoff,
			Logf: func(format string, args ...any) { o.Logf(name+": "+format, args...) }}
		if o.Labels != nil {
			d.cfg.Labels = o.Labels(i)
		}
		if o.Fetcher != nil {
			d.cfg.Fetcher = o.Fetcher(i)
		}
		d.cfg.Hooks = agent.Hooks{Step: d.stepHook, Health: d.healthHook, Reported: d.reported}
		f.Devices = append(f.Devices, d)
	}
	return f, nil
}

// Start runs every device.
func (f *Fleet) Start(ctx context.Context) error {
	for _, d := range f.Devices {
		if err := d.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every device and waits for it.
func (f *Fleet) Stop() {
	for _, d := range f.Devices {
		d.Stop()
	}
}

// Start runs the device's agent (recovering its root first) until Stop or
// Crash.
func (d *Device) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done != nil {
		select {
		case <-d.done:
		default:
			return fmt.Errorf("fleetsim: %s is already running", d.Name)
		}
	}
	a, err := agent.New(d.cfg)
	if err != nil {
		return fmt.Errorf("fleetsim: %s: %w", d.Name, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.agent, d.cancel, d.done, d.runErr = a, cancel, done, nil
	go func() {
		err := a.Run(rctx)
		d.mu.Lock()
		d.runErr = err
		d.mu.Unlock()
		close(done)
	}()
	return nil
}

// Stop stops the device's agent and waits for it to exit.
func (d *Device) Stop() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// Crash stops the agent at once, wherever it is (as a power loss would,
// minus the page cache); Start brings it back through recovery.
func (d *Device) Crash() { d.Stop() }

// CrashAt makes the next install crash right before step ("downloading",
// "activating", "verifying"); the device stays down until Start.
func (d *Device) CrashAt(step string) {
	d.mu.Lock()
	d.crashAt = step
	d.mu.Unlock()
}

// SetOffline cuts (or restores) the device's connection to the fleet API.
func (d *Device) SetOffline(v bool) {
	d.mu.Lock()
	d.offline = v
	d.mu.Unlock()
}

// FailHealth makes the device's health checks fail (or pass again).
func (d *Device) FailHealth(v bool) {
	d.mu.Lock()
	d.failHealth = v
	d.mu.Unlock()
}

// Running reports whether the agent runs.
func (d *Device) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Status is the agent's own view of its releases.
func (d *Device) Status() []fleet.ReleaseStatus {
	d.mu.Lock()
	a := d.agent
	d.mu.Unlock()
	if a == nil {
		return nil
	}
	return a.Status()
}

// Active is the digest the device's current link of release points to.
func (d *Device) Active(release string) string { return agent.ActiveDigest(d.Root, release) }

// Reports counts the status reports the server accepted.
func (d *Device) Reports() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reports
}

func (d *Device) stepHook(_, step string) error {
	d.mu.Lock()
	crash := d.crashAt == step
	if crash {
		d.crashAt = ""
	}
	cancel := d.cancel
	d.mu.Unlock()
	if crash {
		cancel()
		return errCrash
	}
	return nil
}

func (d *Device) healthHook(_ context.Context, _, _, _ string, check func() error) error {
	d.mu.Lock()
	fail := d.failHealth
	d.mu.Unlock()
	if fail {
		return errors.New("fleetsim: injected health failure")
	}
	return check()
}

func (d *Device) reported(fleet.StatusReport) {
	d.mu.Lock()
	d.reports++
	d.mu.Unlock()
}

// deviceAPI fails while its device is offline.
type deviceAPI struct {
	d     *Device
	inner agent.API
}

func (a *deviceAPI) off() bool {
	a.d.mu.Lock()
	defer a.d.mu.Unlock()
	return a.d.offline
}

func (a *deviceAPI) Enroll(ctx context.Context, req fleet.EnrollRequest) (*fleet.EnrollResponse, error) {
	if a.off() {
		return nil, ErrOffline
	}
	return a.inner.Enroll(ctx, req)
}

func (a *deviceAPI) Desired(ctx context.Context, id, cred, etag string, wait time.Duration) (*fleet.DesiredState, bool, error) {
	if a.off() {
		return nil, false, ErrOffline
	}
	ds, changed, err := a.inner.Desired(ctx, id, cred, etag, wait)
	if a.off() {
		return nil, false, ErrOffline
	}
	return ds, changed, err
}

func (a *deviceAPI) ReportStatus(ctx context.Context, id, cred string, r fleet.StatusReport) error {
	if a.off() {
		return ErrOffline
	}
	return a.inner.ReportStatus(ctx, id, cred, r)
}
