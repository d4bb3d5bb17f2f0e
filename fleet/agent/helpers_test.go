package agent

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/registry/models"
)

var bg = context.Background()

// newRegistry starts an in-process OCI registry; delay slows every write of
// a blob download (to make installs take a while).
func newRegistry(t testing.TB, delay time.Duration) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if delay > 0 {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				w = &slowWriter{ResponseWriter: w, delay: delay}
			}
			inner.ServeHTTP(w, r)
		})
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

type slowWriter struct {
	http.ResponseWriter
	delay time.Duration
}

func (s *slowWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := min(len(b), 32<<10)
		m, err := s.ResponseWriter.Write(b[:c])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		time.Sleep(s.delay)
		b = b[c:]
	}
	return n, nil
}

// pushModel pushes files (path → content) and returns the desired model.
func pushModel(t testing.TB, reg, version string, files map[string]string) fleet.DesiredModel {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		f := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	res, err := models.Push(bg, reg+"/models/demo:"+version, paths, models.PushOptions{Name: "demo", Version: version,
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return fleet.DesiredModel{Release: "demo", Model: "demo", Version: version, Artifact: res.Ref, Digest: res.Digest, PlainHTTP: true}
}

// memAPI is an in-process fleet API: the desired state is set by the test,
// reports are kept.
type memAPI struct {
	mu      sync.Mutex
	ds      fleet.DesiredState
	reports []fleet.StatusReport
	offline bool
	changed chan struct{}
}

func newMemAPI() *memAPI { return &memAPI{changed: make(chan struct{}, 1)} }

func (m *memAPI) set(models ...fleet.DesiredModel) {
	m.mu.Lock()
	m.ds = fleet.DesiredState{Target: "t1", ETag: fmt.Sprint(time.Now().UnixNano()), Models: models}
	m.mu.Unlock()
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

func (m *memAPI) setOffline(v bool) {
	m.mu.Lock()
	m.offline = v
	m.mu.Unlock()
}

func (m *memAPI) Enroll(ctx context.Context, req fleet.EnrollRequest) (*fleet.EnrollResponse, error) {
	return &fleet.EnrollResponse{ID: "id-" + req.Name, Credential: "cred-" + req.Name}, nil
}

func (m *memAPI) Desired(ctx context.Context, id, cred, etag string, wait time.Duration) (*fleet.DesiredState, bool, error) {
	m.mu.Lock()
	off := m.offline
	ds := m.ds
	m.mu.Unlock()
	if off {
		return nil, false, fmt.Errorf("desired state of %s: connection refused", id)
	}
	if ds.ETag != etag {
		return &ds, true, nil
	}
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-m.changed:
	case <-time.After(wait):
		return nil, false, nil
	}
	m.mu.Lock()
	ds, off = m.ds, m.offline
	m.mu.Unlock()
	if off {
		return nil, false, fmt.Errorf("desired state of %s: connection reset", id)
	}
	if ds.ETag != etag {
		return &ds, true, nil
	}
	return nil, false, nil
}

func (m *memAPI) ReportStatus(ctx context.Context, id, cred string, r fleet.StatusReport) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.offline {
		return fmt.Errorf("report: connection refused")
	}
	m.reports = append(m.reports, r)
	return nil
}

// phases lists the phases reported for a release, deduplicated in a row.
func (m *memAPI) phases(rel string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.reports {
		for _, s := range r.Releases {
			if s.Release == rel && (len(out) == 0 || out[len(out)-1] != s.Phase) {
				out = append(out, s.Phase)
			}
		}
	}
	return out
}

func (m *memAPI) last(rel string) fleet.ReleaseStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.reports) - 1; i >= 0; i-- {
		for _, s := range m.reports[i].Releases {
			if s.Release == rel {
				return s
			}
		}
	}
	return fleet.ReleaseStatus{}
}

func newTestAgent(t testing.TB, root string, api API, mod func(*Config)) *Agent {
	t.Helper()
	cfg := Config{Root: root, Name: "t1", EnrollToken: "tok", API: api, PollWait: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logf: t.Logf}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.enroll(bg); err != nil {
		t.Fatal(err)
	}
	return a
}

func healthExec(file string) *fleet.HealthCheck {
	return &fleet.HealthCheck{Exec: []string{"sh", "-c", `test -f "$CAIRN_MODEL_DIR/` + file + `"`}, Period: 10 * time.Millisecond, Timeout: 5 * time.Second}
}

func readLink(t testing.TB, p string) string {
	t.Helper()
	s, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return s
}

func wantActive(t testing.TB, root, digest string) {
	t.Helper()
	if got := ActiveDigest(root, "demo"); got != digest {
		t.Fatalf("active model %s, want %s", orNone(got), orNone(digest))
	}
}
