package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are cairn serve's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry          *prometheus.Registry
	ReconcileDuration prometheus.Histogram
	ReconcileErrors   prometheus.Counter
	AdmittedCommit    *prometheus.GaugeVec // commit, 1 for the admitted one
	TargetsByPhase    *prometheus.GaugeVec // phase
	TargetsOnline     prometheus.Gauge
	RolloutWave       *prometheus.GaugeVec // release
	RolloutProgress   *prometheus.GaugeVec // release: updated/selected in [0,1]
	DesiredWrites     prometheus.Counter
	DesiredPublished  prometheus.Counter
	DesiredSynced     prometheus.Counter       // read from the store, written by another replica
	APILatency        *prometheus.HistogramVec // route, code
	SourceFetches     *prometheus.CounterVec   // result
}

// NewMetrics registers every metric with a fresh registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		ReconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cairn_reconcile_duration_seconds", Help: "Duration of one reconcile pass.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		ReconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_reconcile_errors_total", Help: "Reconcile passes that failed."}),
		AdmittedCommit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_admitted_commit_info", Help: "The admitted commit of the source (value 1).",
		}, []string{"commit"}),
		TargetsByPhase: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_targets", Help: "Targets by summarised phase."}, []string{"phase"}),
		TargetsOnline:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "cairn_targets_online", Help: "Targets seen within the offline threshold."}),
		RolloutWave:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cairn_rollout_wave", Help: "Current wave of each release's rollout."}, []string{"release"}),
		RolloutProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cairn_rollout_progress_ratio", Help: "Share of a release's selected targets told to run its admitted model.",
		}, []string{"release"}),
		DesiredWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "cairn_desired_writes_total", Help: "Desired-state rows written to the store."}),
		DesiredPublished: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_desired_published_total", Help: "Desired states handed to the fleet API (long-polls woken).",
		}),
		DesiredSynced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cairn_desired_synced_total", Help: "Desired states the fleet API read from the store (written by another replica, or before a restart).",
		}),
		APILatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cairn_api_request_duration_seconds", Help: "API latency by route (long-polls include their wait).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "code"}),
		SourceFetches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cairn_source_fetches_total", Help: "Git fetches by result."}, []string{"result"}),
	}
	m.Registry.MustRegister(m.ReconcileDuration, m.ReconcileErrors, m.AdmittedCommit, m.TargetsByPhase, m.TargetsOnline,
		m.RolloutWave, m.RolloutProgress, m.DesiredWrites, m.DesiredPublished, m.DesiredSynced, m.APILatency, m.SourceFetches,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// statusWriter records the status code for the latency histogram.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument times h under route.
func (m *Metrics) instrument(route string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: 200}
		h(sw, r)
		m.APILatency.WithLabelValues(route, codeLabel(sw.code)).Observe(time.Since(start).Seconds())
	}
}

func codeLabel(c int) string { return strconv.Itoa(c) }
