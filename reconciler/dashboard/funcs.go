package dashboard

import (
	"html/template"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-dev/cairn/manifests"
)

var funcs = template.FuncMap{
	"short": func(d string) string {
		if d == "" {
			return "–"
		}
		if !strings.Contains(d, ":") && len(d) > 12 {
			return d[:12] // a commit
		}
		return manifests.ShortDigest(d)
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"ago": func(t any) string {
		var tt time.Time
		switch v := t.(type) {
		case time.Time:
			tt = v
		case *time.Time:
			if v != nil {
				tt = *v
			}
		}
		if tt.IsZero() {
			return "never"
		}
		return ago(time.Now(), tt) + " ago"
	},
	"metric": func(m map[string]float64, name string) string {
		key := map[string]string{"cpu": "cpu_percent", "memory": "memory_bytes", "temperature": "temperature_c", "uptime": "uptime_s"}[name]
		v, ok := m[key]
		if !ok {
			return "–"
		}
		return formatMetric(name, v)
	},
	"labels": func(m map[string]string) []string {
		out := make([]string, 0, len(m))
		for k, v := range m {
			out = append(out, k+"="+v)
		}
		sort.Strings(out)
		return out
	},
	"join":  strings.Join,
	"query": url.QueryEscape,
	"path":  url.PathEscape,
	"pct":   func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) + "%" },
	"dur": func(s any) string {
		switch v := s.(type) {
		case float64:
			return (time.Duration(v) * time.Second).Round(time.Second).String()
		}
		return ""
	},
	"lower": strings.ToLower,
	"add":   func(a, b int) int { return a + b },
	"bytes": func(n int64) string { return bytesIEC(float64(n)) },
}

// ago renders how long before now t was: 12s, 5m, 3h, 2d.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(max(d, 0).Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}
