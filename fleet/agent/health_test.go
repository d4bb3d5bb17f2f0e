package agent

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/models"
)

func TestCheckHealth(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(204)
		case "/bad":
			http.Error(w, "model not loaded", 503)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/flaky": // healthy from the third call
			if calls.Add(1) < 3 {
				http.Error(w, "warming up", 503)
			}
		}
	}))
	defer srv.Close()
	ms := 10 * time.Millisecond
	for _, tc := range []struct {
		name    string
		hc      *fleet.HealthCheck
		wantErr string
	}{
		{"none", nil, ""},
		{"http 2xx", &fleet.HealthCheck{HTTP: srv.URL + "/ok", Period: ms}, ""},
		{"http 503", &fleet.HealthCheck{HTTP: srv.URL + "/bad", Period: ms}, "503 Service Unavailable: model not loaded"},
		{"http timeout", &fleet.HealthCheck{HTTP: srv.URL + "/slow", Period: ms, Timeout: 50 * time.Millisecond}, "no answer within the timeout"},
		{"http retries", &fleet.HealthCheck{HTTP: srv.URL + "/flaky", Period: ms, Retries: 3}, ""},
		{"http retries exhausted", &fleet.HealthCheck{HTTP: srv.URL + "/bad", Period: ms, Retries: 2}, "after 3 attempts"},
		{"exec ok", &fleet.HealthCheck{Exec: []string{"sh", "-c", `test "$CAIRN_MODEL_DIR" = /models/x`}, Period: ms}, ""},
		{"exec fails", &fleet.HealthCheck{Exec: []string{"sh", "-c", "echo broken weights >&2; exit 3"}, Period: ms}, "exit status 3: broken weights"},
		{"exec timeout", &fleet.HealthCheck{Exec: []string{"sleep", "5"}, Period: ms, Timeout: 50 * time.Millisecond}, "timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckHealth(context.Background(), tc.hc, "/models/x", nil)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unhealthy: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// enospcFetcher fails like a full disk.
type enospcFetcher struct{}

func (enospcFetcher) Fetch(context.Context, string, string, bool) (string, error) {
	return "", fmt.Errorf("write model.onnx: %w", syscall.ENOSPC)
}

// A full disk is retried like other storage errors (collecting the cache
// may make room) and fails the install once the downloadTimeout passed.
func TestDiskFullFailsCleanly(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2"})
	root := t.TempDir()
	api := newMemAPI()
	a := newTestAgent(t, root, api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	full := newTestAgent(t, root, api, func(c *Config) { c.Fetcher = enospcFetcher{} })
	if err := full.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}}); err == nil {
		t.Fatal("disk full: no error to retry")
	}
	s := api.last("demo")
	if s.Phase != fleet.PhaseDownloading || !strings.Contains(s.Message, "no space left on device") || s.Digest != v1.Digest {
		t.Fatalf("status %+v", s)
	}
	v2.DownloadTimeout = time.Nanosecond
	full.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v2}})
	s = api.last("demo")
	if s.Phase != fleet.PhaseFailed || !strings.Contains(s.Message, "no space left on device") || s.Digest != v1.Digest {
		t.Fatalf("status %+v", s)
	}
	wantActive(t, root, v1.Digest)
}

func TestReportCarriesRuntimeMetrics(t *testing.T) {
	rt := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			fmt.Fprint(w, `{"error_rate":0.25,"latency_p95_ms":31,"requests":8,"features":{"rms":{"count":8,"mean":0.5}}}`)
		}
	}))
	defer rt.Close()
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	v1.Runtime.HealthCheck = &fleet.HealthCheck{HTTP: rt.URL + "/healthz", Period: time.Millisecond}
	api := newMemAPI()
	a := newTestAgent(t, t.TempDir(), api, nil)
	if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
		t.Fatal(err)
	}
	a.Report(bg)
	r := api.reports[len(api.reports)-1]
	if r.Metrics["error_rate"] != 0.25 || r.Metrics["latency_p95_ms"] != 31 || r.Features["rms"].Count != 8 {
		t.Fatalf("metrics %v features %v", r.Metrics, r.Features)
	}
	if _, ok := r.Metrics["uptime_s"]; !ok {
		t.Errorf("no uptime in %v", r.Metrics)
	}
	if r.Facts == nil {
		t.Fatalf("report without facts: %+v", r)
	}
	// Each deployment step is delivered once, in order.
	var steps []string
	for _, r := range api.reports {
		for _, e := range r.Log {
			steps = append(steps, e.Phase)
		}
	}
	if want := "Downloading Installing Verifying Healthy"; strings.Join(steps, " ") != want {
		t.Fatalf("log delivered %v, want %s", steps, want)
	}
}

func TestDetectFacts(t *testing.T) {
	f := DetectFacts(t.TempDir())
	if f.Arch == "" || f.OS == "" || f.CPUs == 0 || f.TimeZone == "" {
		t.Fatalf("facts %+v", f)
	}
	if f.OS == "linux" && (f.Memory == 0 || f.Kernel == "" || f.DiskFree == 0) {
		t.Fatalf("linux facts %+v", f)
	}
}

// TestHealthCheckEnvAllowList: a health check sees the allow-listed
// variables and CAIRN_MODEL_DIR, never the agent's secrets.
func TestHealthCheckEnvAllowList(t *testing.T) {
	t.Setenv("CAIRN_ENROLL_TOKEN", "fleet-secret")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
	t.Setenv("TZ", "UTC")
	hc := &fleet.HealthCheck{Exec: []string{"sh", "-c", `test -z "$CAIRN_ENROLL_TOKEN" && test -z "$AWS_SECRET_ACCESS_KEY" && test "$TZ" = UTC && test -n "$PATH" && test "$CAIRN_MODEL_DIR" = /m`}, Period: time.Millisecond}
	if err := CheckHealth(context.Background(), hc, "/m", http.DefaultClient); err != nil {
		t.Fatalf("health check saw the agent's secrets or missed allowed variables: %v", err)
	}
}

// fixedFetcher answers every fetch with digest and err.
type fixedFetcher struct {
	digest string
	err    error
}

func (f fixedFetcher) Fetch(context.Context, string, string, bool) (string, error) {
	return f.digest, f.err
}

// Faults of the artifact itself fail the install at once, within any
// downloadTimeout; faults of the way to it are retried.
func TestDownloadFaultsPermanentOrRetried(t *testing.T) {
	reg := newRegistry(t, 0)
	v1 := pushModel(t, reg, "1", map[string]string{"model.onnx": "weights v1"})
	v2 := pushModel(t, reg, "2", map[string]string{"model.onnx": "weights v2"})
	cases := []struct {
		name  string
		fetch fixedFetcher
		phase string
	}{
		{"other manifest digest", fixedFetcher{digest: "sha256:" + strings.Repeat("a", 64)}, fleet.PhaseFailed},
		{"layer digest mismatch", fixedFetcher{err: fmt.Errorf("layer model.onnx: %w", models.ErrDigestMismatch)}, fleet.PhaseFailed},
		{"not a model", fixedFetcher{err: fmt.Errorf("config: %w", models.ErrNotModel)}, fleet.PhaseFailed},
		{"unsafe path", fixedFetcher{err: fmt.Errorf("layer x: ../../etc: %w", models.ErrUnsafePath)}, fleet.PhaseFailed},
		{"connection reset", fixedFetcher{err: fmt.Errorf("read blob: %w", syscall.ECONNRESET)}, fleet.PhaseDownloading},
		{"registry 503", fixedFetcher{err: fmt.Errorf("GET /v2/: 503 Service Unavailable")}, fleet.PhaseDownloading},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			api := newMemAPI()
			a := newTestAgent(t, root, api, nil)
			if err := a.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{v1}}); err != nil {
				t.Fatal(err)
			}
			b := newTestAgent(t, root, api, func(cfg *Config) { cfg.Fetcher = c.fetch })
			in := v2
			in.DownloadTimeout = time.Hour
			b.Apply(bg, &fleet.DesiredState{Models: []fleet.DesiredModel{in}})
			if s := api.last("demo"); s.Phase != c.phase || s.Digest != v1.Digest {
				t.Fatalf("status %+v, want %s on v1", s, c.phase)
			}
			wantActive(t, root, v1.Digest)
		})
	}
}
