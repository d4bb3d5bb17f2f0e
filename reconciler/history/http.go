package history

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// API paths of the history, under the server's root (admin or read-only token).
const (
	PathMetrics = "/api/v1/targets/{id}/metrics" // ?from&to&step
	PathUptime  = "/api/v1/uptime"               // ?window=30d&target=&transitions=true
)

// NewHandler serves PathMetrics and PathUptime from h; the server's mux
// routes them here and checks the token.
func NewHandler(h *History) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		now := h.now()
		if r.URL.Path == PathUptime {
			window, err := ParseWindow(q.Get("window"), 30*24*time.Hour)
			if err != nil {
				writeError(w, http.StatusBadRequest, "uptime: window: %v", err)
				return
			}
			rep, err := h.Uptime(r.Context(), q.Get("target"), window, now, q.Get("transitions") == "true")
			if err != nil {
				writeError(w, http.StatusInternalServerError, "uptime: %v", err)
				return
			}
			writeJSON(w, rep)
			return
		}
		target := r.PathValue("id")
		if target == "" {
			rest, _ := strings.CutPrefix(r.URL.Path, "/api/v1/targets/")
			target, _ = strings.CutSuffix(rest, "/metrics")
		}
		from, err := ParseTime(q.Get("from"), now, now.Add(-time.Hour))
		if err != nil {
			writeError(w, http.StatusBadRequest, "metrics of %s: from: %v", target, err)
			return
		}
		to, err := ParseTime(q.Get("to"), now, now)
		if err != nil {
			writeError(w, http.StatusBadRequest, "metrics of %s: to: %v", target, err)
			return
		}
		var step time.Duration
		if s := q.Get("step"); s != "" {
			if step, err = ParseWindow(s, 0); err != nil {
				writeError(w, http.StatusBadRequest, "metrics of %s: step: %v", target, err)
				return
			}
		}
		m, err := h.Points(r.Context(), target, from, to, step)
		if err != nil {
			code := http.StatusBadRequest
			if strings.Contains(err.Error(), "read metrics") || strings.Contains(err.Error(), "flush") {
				code = http.StatusInternalServerError
			}
			writeError(w, code, "%v", err)
			return
		}
		writeJSON(w, m)
	})
}

// ParseWindow parses a Go duration or a number of days ("30d"); empty
// gives def.
func ParseWindow(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.ParseFloat(n, 64)
		if err != nil || d <= 0 || d > 3650 {
			return 0, fmt.Errorf("%q: want a duration such as 90m, 24h or 30d", s)
		}
		return time.Duration(d * 24 * float64(time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a duration such as 90m, 24h or 30d", s)
	}
	return d, nil
}

// ParseTime parses RFC 3339, Unix seconds, or a duration back from now
// ("6h", "2d"); empty gives def.
func ParseTime(s string, now, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	if d, err := ParseWindow(strings.TrimPrefix(s, "-"), 0); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, Unix seconds or a duration back from now (6h, 2d)", s)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
}
