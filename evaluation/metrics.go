package evaluation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// Bounds of what an evaluate command may print.
const (
	// MaxOutput is the most stdout ParseMetrics reads (64 KiB).
	MaxOutput = 64 << 10
	// MaxMetrics is the most metrics one object may hold.
	MaxMetrics = 200
	// MaxName is the longest metric name.
	MaxName = 128
)

// ErrBadOutput is stdout that is not one JSON object of finite numbers.
var ErrBadOutput = errors.New("evaluate command output")

// ParseMetrics reads the one JSON object of metrics an evaluate command
// prints on stdout ({"auc": 0.95, "f1": 0.9}), with only white space
// around it. Anything else is an error wrapping ErrBadOutput, never a
// verdict: text around the object, a second object, nested values,
// strings, null, non-finite or duplicate names, an empty object, more than
// MaxMetrics names or MaxOutput bytes.
func ParseMetrics(out []byte) (map[string]float64, error) {
	bad := func(format string, args ...any) (map[string]float64, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadOutput, fmt.Sprintf(format, args...))
	}
	if len(out) > MaxOutput {
		return bad("more than %d bytes", MaxOutput)
	}
	if !utf8.Valid(out) {
		return bad("not UTF-8")
	}
	trimmed := bytes.TrimSpace(out)
	if len(trimmed) == 0 {
		return bad("nothing printed: want one JSON object such as {\"auc\": 0.95}")
	}
	if trimmed[0] != '{' {
		return bad("want one JSON object such as {\"auc\": 0.95}, got %q", clip(trimmed))
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return bad("%v", err)
	}
	m := map[string]float64{}
	for dec.More() {
		tk, err := dec.Token()
		if err != nil {
			return bad("%v", err)
		}
		name, ok := tk.(string)
		if !ok {
			return bad("want a metric name, got %v", tk)
		}
		if name == "" || len(name) > MaxName {
			return bad("metric name %q: want 1 to %d bytes", clip([]byte(name)), MaxName)
		}
		if _, dup := m[name]; dup {
			return bad("metric %q printed twice", name)
		}
		tk, err = dec.Token()
		if err != nil {
			return bad("metric %q: %v", name, err)
		}
		num, ok := tk.(json.Number)
		if !ok {
			return bad("metric %q: want a number, got %v", name, describe(tk))
		}
		v, err := strconv.ParseFloat(string(num), 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return bad("metric %q: %s is not a finite number", name, num)
		}
		if len(m) == MaxMetrics {
			return bad("more than %d metrics", MaxMetrics)
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil { // }
		return bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		rest, _ := io.ReadAll(dec.Buffered())
		return bad("text after the metrics object: %q", clip(rest))
	}
	if len(m) == 0 {
		return bad("an empty object: no metrics")
	}
	return m, nil
}

func describe(tk json.Token) string {
	switch v := tk.(type) {
	case json.Delim:
		return "a nested " + map[json.Delim]string{'{': "object", '[': "array"}[v]
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprint(tk)
}

// clip bounds text quoted in an error.
func clip(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}
