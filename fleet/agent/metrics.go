package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-dev/cairn/fleet"
)

// systemMetrics samples CPU use (between two calls), memory in use,
// the hottest thermal zone and uptime, where the system exposes them.
type systemMetrics struct {
	mu              sync.Mutex
	lastIdle, lastT uint64
}

func (s *systemMetrics) sample() map[string]float64 {
	m := map[string]float64{}
	if idle, total, ok := cpuTimes(); ok {
		s.mu.Lock()
		if s.lastT > 0 && total > s.lastT {
			dt, di := float64(total-s.lastT), float64(idle-s.lastIdle)
			m["cpu_percent"] = math.Round(1000*(1-di/dt)) / 10
		}
		s.lastIdle, s.lastT = idle, total
		s.mu.Unlock()
	}
	if mi := meminfo(); mi["MemTotal"] > 0 {
		m["memory_bytes"] = float64(mi["MemTotal"] - mi["MemAvailable"])
		m["memory_total_bytes"] = float64(mi["MemTotal"])
	}
	if t, ok := temperature(); ok {
		m["temperature_c"] = t
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				m["uptime_s"] = v
			}
		}
	}
	return m
}

func cpuTimes() (idle, total uint64, ok bool) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, false
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, v := range fields[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return idle, total, true
}

func temperature() (float64, bool) {
	zones, _ := filepath.Glob("/sys/class/thermal/thermal_zone*/temp")
	best, ok := 0.0, false
	for _, z := range zones {
		b, err := os.ReadFile(z)
		if err != nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			continue
		}
		if c := v / 1000; !ok || c > best {
			best, ok = c, true
		}
	}
	return best, ok
}

// runtimeMetricsURL is /metrics on the host of a health check URL.
func runtimeMetricsURL(health string) string {
	u, err := url.Parse(health)
	if err != nil || u.Host == "" {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/metrics"}).String()
}

// fetchRuntimeMetrics reads a runtime's /metrics, JSON or Prometheus text:
// every top-level number (JSON) or unlabelled sample (Prometheus), plus
// error_rate and latency_p95_ms under those names when a metric ends so,
// and live feature statistics from a JSON "features" object.
func fetchRuntimeMetrics(ctx context.Context, hc *http.Client, u string) (map[string]float64, map[string]fleet.FeatureStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json, text/plain;q=0.5")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("runtime metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, nil, fmt.Errorf("runtime metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("runtime metrics: %w", err)
	}
	return ParseRuntimeMetrics(body)
}

// ParseRuntimeMetrics decodes a runtime's metrics document (JSON object or
// Prometheus text exposition).
func ParseRuntimeMetrics(body []byte) (map[string]float64, map[string]fleet.FeatureStats, error) {
	m := map[string]float64{}
	canon := func(name string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		m[name] = v
		for _, c := range []string{"error_rate", "latency_p95_ms"} {
			if strings.HasSuffix(name, c) {
				if _, set := m[c]; !set || name == c {
					m[c] = v
				}
			}
		}
	}
	trimmed := strings.TrimSpace(string(body))
	if strings.HasPrefix(trimmed, "{") {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, nil, fmt.Errorf("runtime metrics: %w", err)
		}
		var feats map[string]fleet.FeatureStats
		for k, raw := range doc {
			if k == "features" {
				_ = json.Unmarshal(raw, &feats)
				continue
			}
			var v float64
			if json.Unmarshal(raw, &v) == nil {
				canon(k, v)
			}
		}
		return m, feats, nil
	}
	for _, line := range strings.Split(trimmed, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err != nil {
			continue
		}
		canon(f[0], v)
	}
	return m, nil, nil
}
