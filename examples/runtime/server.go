package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/examples/bearing/model"
	"github.com/cairn-dev/cairn/fleet"
	"github.com/cairn-dev/cairn/fleet/agent"
	"github.com/cairn-dev/cairn/registry/datasets"
	"github.com/cairn-dev/cairn/registry/datasets/drift"
)

// maxBody bounds a /predict request.
const maxBody = 8 << 20

// server serves the model found in dir (usually the agent's active-slot
// symlink) and reloads it when the slot changes.
type server struct {
	dir string

	mu       sync.RWMutex
	model    *model.Model
	loadedAt time.Time
	slot     string // resolved folder of the loaded model
	stamp    string // what reload compares: resolved path, config size and mtime
	health   error  // why the runtime is unhealthy; nil when healthy
	reloads  int

	stats *stats
	// spool, when set, keeps the scored inputs for the agent's feedback
	// upload (--feedback-dir, default $CAIRN_FEEDBACK_DIR).
	spool *spool
}

func newServer(dir string) *server {
	return &server{dir: dir, stats: newStats()}
}

// slotStamp identifies the slot's content cheaply: where the symlink points
// and the config's size and modification time.
func slotStamp(dir string) (resolved, stamp string, err error) {
	resolved, err = filepath.EvalSymlinks(dir)
	if err != nil {
		return "", "", err
	}
	found, err := model.FindDir(resolved)
	if err != nil {
		return resolved, "", err
	}
	st, err := os.Stat(filepath.Join(found, model.ConfigFile))
	if err != nil {
		return resolved, "", err
	}
	return resolved, fmt.Sprintf("%s|%d|%d", found, st.Size(), st.ModTime().UnixNano()), nil
}

// reload loads the slot when it changed since the last load. A model that
// fails to load or fails its self-test makes the runtime unhealthy; the
// previous model, if any, keeps serving predictions.
func (s *server) reload() (changed bool) {
	resolved, stamp, err := slotStamp(s.dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		key := "error:" + err.Error()
		if s.stamp == key {
			return false
		}
		s.stamp = key
		s.health = fmt.Errorf("model slot %s: %w", s.dir, err)
		return true
	}
	if stamp == s.stamp {
		return false
	}
	s.stamp = stamp
	s.reloads++
	m, err := model.Load(resolved)
	if err == nil {
		err = m.SelfTest()
	}
	var refs map[string]drift.Reference
	if err == nil {
		refs, err = loadProfile(resolved)
	}
	if err != nil {
		s.health = fmt.Errorf("model in %s: %w", resolved, err)
		return true
	}
	s.model, s.slot, s.loadedAt, s.health = m, resolved, time.Now(), nil
	s.stats.reset(m, refs)
	return true
}

// profileFile is the training profile a model folder may ship (bearing
// train writes it): the runtime counts live inputs into its bins.
const profileFile = "profile.json"

// loadProfile reads the drift references of the model folder's profile;
// none (nil) when the model ships no profile.
func loadProfile(dir string) (map[string]drift.Reference, error) {
	found, err := model.FindDir(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(found, profileFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p datasets.Profile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decode %s: %w", profileFile, err)
	}
	refs := p.References()
	for name, r := range refs {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("%s: column %s: %w", profileFile, name, err)
		}
	}
	return refs, nil
}

// watch polls the slot every period until stop is closed.
func (s *server) watch(period time.Duration, stop <-chan struct{}, logf func(string, ...any)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if s.reload() {
				s.logState(logf)
			}
		}
	}
}

func (s *server) logState(logf func(string, ...any)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.health != nil {
		logf("unhealthy: %v", s.health)
		return
	}
	logf("serving %s %s from %s", s.model.Config.Name, s.model.Config.Version, s.slot)
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /predict", s.predict)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /metrics", s.metrics)
	return mux
}

// PredictRequest is the body of POST /predict: rows of features in the
// model's order, or instances keyed by feature name.
type PredictRequest struct {
	Rows      [][]float64          `json:"rows,omitempty"`
	Instances []map[string]float64 `json:"instances,omitempty"`
}

// PredictResponse answers POST /predict.
type PredictResponse struct {
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Scores    []float64 `json:"scores"`
	Anomalies []bool    `json:"anomalies"`
	Threshold float64   `json:"threshold"`
}

func (s *server) predict(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, resp, err := s.doPredict(r)
	s.stats.observe(time.Since(start), err != nil)
	if err != nil {
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *server) doPredict(r *http.Request) (int, *PredictResponse, error) {
	s.mu.RLock()
	m := s.model
	s.mu.RUnlock()
	if m == nil {
		return http.StatusServiceUnavailable, nil, errors.New("no model loaded")
	}
	var req PredictRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return http.StatusBadRequest, nil, fmt.Errorf("decode request: %w", err)
	}
	rows := req.Rows
	for i, in := range req.Instances {
		row := make([]float64, len(m.Config.Features))
		for j, f := range m.Config.Features {
			v, ok := in[f]
			if !ok {
				return http.StatusBadRequest, nil, fmt.Errorf("instance %d: missing feature %q", i, f)
			}
			row[j] = v
		}
		rows = append(rows, row)
	}
	scores, err := m.Score(rows)
	if err != nil {
		return http.StatusBadRequest, nil, err
	}
	s.stats.features(m, rows)
	if s.spool != nil {
		s.spool.add(m.Config.Features, rows) // feedback is best effort: a full disk never fails a prediction
	}
	resp := &PredictResponse{Model: m.Config.Name, Version: m.Config.Version, Scores: scores,
		Anomalies: make([]bool, len(scores)), Threshold: m.Config.Threshold}
	for i, sc := range scores {
		resp.Anomalies[i] = sc >= m.Config.Threshold
	}
	return http.StatusOK, resp, nil
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.health != nil || s.model == nil {
		msg := "no model loaded"
		if s.health != nil {
			msg = s.health.Error()
		}
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unhealthy", "error": msg})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "model": s.model.Config.Name,
		"version": s.model.Config.Version, "slot": s.slot})
}

// Metrics is the JSON of GET /metrics.
type Metrics struct {
	Model        string                        `json:"model,omitempty"`
	Version      string                        `json:"version,omitempty"`
	Slot         string                        `json:"slot,omitempty"`
	Healthy      bool                          `json:"healthy"`
	Reloads      int                           `json:"reloads"`
	Requests     int64                         `json:"requests"`
	Errors       int64                         `json:"errors"`
	ErrorRate    float64                       `json:"error_rate"`
	LatencyP95MS float64                       `json:"latency_p95_ms"`
	Features     map[string]fleet.FeatureStats `json:"features,omitempty"`
	// Inputs are the cumulative input histograms since the model loaded,
	// over the bins of the profile it ships (cairn_input_feature).
	Inputs map[string]fleet.FeatureHistogram `json:"inputs,omitempty"`
}

func (s *server) snapshot() Metrics {
	s.mu.RLock()
	mt := Metrics{Healthy: s.health == nil && s.model != nil, Reloads: s.reloads, Slot: s.slot}
	if s.model != nil {
		mt.Model, mt.Version = s.model.Config.Name, s.model.Config.Version
	}
	s.mu.RUnlock()
	s.stats.fill(&mt)
	return mt
}

func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	mt := s.snapshot()
	if r.URL.Query().Get("format") == "prometheus" || strings.HasPrefix(r.Header.Get("Accept"), "text/plain") {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		writePrometheus(w, mt)
		return
	}
	writeJSON(w, http.StatusOK, mt)
}

func writePrometheus(w io.Writer, mt Metrics) {
	healthy := 0
	if mt.Healthy {
		healthy = 1
	}
	fmt.Fprintf(w, "# HELP bearing_requests_total Prediction requests served.\n# TYPE bearing_requests_total counter\nbearing_requests_total %d\n", mt.Requests)
	fmt.Fprintf(w, "# HELP bearing_request_errors_total Prediction requests that failed.\n# TYPE bearing_request_errors_total counter\nbearing_request_errors_total %d\n", mt.Errors)
	fmt.Fprintf(w, "# HELP bearing_error_rate Failed share of prediction requests.\n# TYPE bearing_error_rate gauge\nbearing_error_rate %g\n", mt.ErrorRate)
	fmt.Fprintf(w, "# HELP bearing_latency_p95_ms 95th percentile latency of recent requests.\n# TYPE bearing_latency_p95_ms gauge\nbearing_latency_p95_ms %g\n", mt.LatencyP95MS)
	fmt.Fprintf(w, "# HELP bearing_healthy 1 when the loaded model passes its self-test.\n# TYPE bearing_healthy gauge\nbearing_healthy %d\n", healthy)
	fmt.Fprintf(w, "# HELP bearing_model_info The model being served.\n# TYPE bearing_model_info gauge\nbearing_model_info{model=%q,version=%q} 1\n", mt.Model, mt.Version)
	names := make([]string, 0, len(mt.Features))
	for n := range mt.Features {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "# HELP bearing_feature_mean Live mean of an input feature.\n# TYPE bearing_feature_mean gauge\n")
	for _, n := range names {
		fmt.Fprintf(w, "bearing_feature_mean{feature=%q} %g\n", n, mt.Features[n].Mean)
	}
	fmt.Fprintf(w, "# HELP bearing_feature_count Rows seen per input feature.\n# TYPE bearing_feature_count counter\n")
	for _, n := range names {
		fmt.Fprintf(w, "bearing_feature_count{feature=%q} %d\n", n, mt.Features[n].Count)
	}
	if len(mt.Inputs) > 0 {
		_ = agent.FormatInputs(w, mt.Inputs)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// stats are request counters, recent latencies and live feature statistics.
type stats struct {
	mu        sync.Mutex
	requests  int64
	errors    int64
	latencies []float64 // ring of the last len(latencies) requests, ms
	next      int
	filled    bool
	feat      map[string]*featureAcc
	order     []string
}

type featureAcc struct {
	n        int64
	mean, m2 float64
	min, max float64
	edges    []float64
	counts   []int64
	// bounds and buckets are the live input histogram over the profile's
	// bins: buckets[i] holds values in (bounds[i-1], bounds[i]], the last
	// those above every bound.
	bounds  []float64
	buckets []int64
}

func newStats() *stats { return &stats{latencies: make([]float64, 1024)} }

// reset starts the feature statistics over for a newly loaded model, with
// ten histogram bins spanning mean ± 3 std of its training data, and the
// input histograms over the bins of the training profile (refs) where the
// model ships one.
func (st *stats) reset(m *model.Model, refs map[string]drift.Reference) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.feat = map[string]*featureAcc{}
	st.order = append([]string(nil), m.Config.Features...)
	for j, f := range m.Config.Features {
		lo, hi := m.Config.Mean[j]-3*m.Config.Std[j], m.Config.Mean[j]+3*m.Config.Std[j]
		edges := make([]float64, 11)
		for k := range edges {
			edges[k] = lo + (hi-lo)*float64(k)/10
		}
		a := &featureAcc{edges: edges, counts: make([]int64, 10), min: math.Inf(1), max: math.Inf(-1)}
		if r, ok := refs[f]; ok {
			a.bounds = drift.Bounds(r)
			a.buckets = make([]int64, len(a.bounds)+1)
		}
		st.feat[f] = a
	}
}

func (st *stats) observe(d time.Duration, failed bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.requests++
	if failed {
		st.errors++
	}
	st.latencies[st.next] = float64(d.Microseconds()) / 1000
	st.next = (st.next + 1) % len(st.latencies)
	if st.next == 0 {
		st.filled = true
	}
}

func (st *stats) features(m *model.Model, rows [][]float64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range rows {
		for j, f := range m.Config.Features {
			a := st.feat[f]
			if a == nil {
				continue
			}
			v := r[j]
			a.n++
			d := v - a.mean
			a.mean += d / float64(a.n)
			a.m2 += d * (v - a.mean)
			a.min, a.max = math.Min(a.min, v), math.Max(a.max, v)
			k := sort.SearchFloat64s(a.edges, v) - 1
			a.counts[min(max(k, 0), len(a.counts)-1)]++
			if a.buckets != nil {
				// The first bound at or above v: le semantics.
				a.buckets[sort.SearchFloat64s(a.bounds, v)]++
			}
		}
	}
}

func (st *stats) fill(mt *Metrics) {
	st.mu.Lock()
	defer st.mu.Unlock()
	mt.Requests, mt.Errors = st.requests, st.errors
	if st.requests > 0 {
		mt.ErrorRate = float64(st.errors) / float64(st.requests)
	}
	n := st.next
	if st.filled {
		n = len(st.latencies)
	}
	if n > 0 {
		l := append([]float64(nil), st.latencies[:n]...)
		sort.Float64s(l)
		mt.LatencyP95MS = l[int(math.Ceil(0.95*float64(n)))-1]
	}
	if len(st.feat) > 0 {
		mt.Features = map[string]fleet.FeatureStats{}
		for _, f := range st.order {
			a := st.feat[f]
			fs := fleet.FeatureStats{Count: a.n, Mean: a.mean, Bins: append([]float64(nil), a.edges...),
				Counts: append([]int64(nil), a.counts...)}
			if a.n > 0 {
				fs.Min, fs.Max = a.min, a.max
			}
			if a.n > 1 {
				fs.Variance = a.m2 / float64(a.n-1)
			}
			mt.Features[f] = fs
			if a.buckets != nil {
				if mt.Inputs == nil {
					mt.Inputs = map[string]fleet.FeatureHistogram{}
				}
				mt.Inputs[f] = fleet.FeatureHistogram{Bounds: slices.Clone(a.bounds), Counts: slices.Clone(a.buckets)}
			}
		}
	}
}
