package evaluation

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseMetrics(t *testing.T) {
	ok := []struct {
		in   string
		want map[string]float64
	}{
		{`{"auc": 0.95}`, map[string]float64{"auc": 0.95}},
		{"\n  {\"auc\":0.9,\"f1\":1e-1,\"n\":-3}\n\n", map[string]float64{"auc": 0.9, "f1": 0.1, "n": -3}},
	}
	for _, tc := range ok {
		got, err := ParseMetrics([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseMetrics(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	bad := map[string]string{
		"":                               "nothing printed",
		"auc=0.95":                       "want one JSON object",
		"loading model…\n{\"auc\": 0.9}": "want one JSON object",
		`{"auc": 0.9} {"auc": 0.8}`:      "text after",
		`{"auc": 0.9} done`:              "text after",
		`{"auc": "0.9"}`:                 "want a number, got a string",
		`{"auc": null}`:                  "got null",
		`{"auc": {"v": 1}}`:              "a nested object",
		`{"auc": [1]}`:                   "a nested array",
		`{"auc": true}`:                  "a boolean",
		`{"auc": 1e999}`:                 "not a finite number",
		`{"auc": 0.9, "auc": 0.8}`:       "printed twice",
		`{}`:                             "empty object",
		`{"": 1}`:                        "metric name",
		`{"auc": 0.9`:                    "EOF",
		`[0.9]`:                          "want one JSON object",
		"{\"a\xff\": 1}":                 "not UTF-8",
	}
	for in, want := range bad {
		_, err := ParseMetrics([]byte(in))
		if !errors.Is(err, ErrBadOutput) || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseMetrics(%q) = %v, want ErrBadOutput with %q", in, err, want)
		}
	}
	big := "{" + strings.Repeat(" ", MaxOutput) + `"auc": 1}`
	if _, err := ParseMetrics([]byte(big)); !errors.Is(err, ErrBadOutput) {
		t.Errorf("%d bytes of output accepted", len(big))
	}
	var many strings.Builder
	many.WriteString("{")
	for i := range MaxMetrics + 1 {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`"m` + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + `_` + strings.Repeat("y", i/26) + `": 1`)
	}
	many.WriteString("}")
	if _, err := ParseMetrics([]byte(many.String())); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("%d metrics: %v", MaxMetrics+1, err)
	}
}

// FuzzParseMetrics: whatever a command prints, ParseMetrics either refuses
// it with ErrBadOutput or returns what it promises: 1 to MaxMetrics names
// of 1 to MaxName bytes with finite values, from input that is one valid
// JSON object; and those metrics, printed again, parse to the same.
func FuzzParseMetrics(f *testing.F) {
	for _, s := range []string{`{"auc": 0.95}`, `{"auc":0.9,"f1":0.8}`, `{"a":1e308}`, `{"a":-0}`, `{"a":1}{"b":2}`, `{"a":[1]}`, "  {\"x\": 3}\n", `{"a":1,"a":2}`, `garbage`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		m, err := ParseMetrics(out)
		if err != nil {
			if !errors.Is(err, ErrBadOutput) || m != nil {
				t.Fatalf("error %v not ErrBadOutput, or metrics %v with it", err, m)
			}
			return
		}
		if len(out) > MaxOutput || !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("accepted %q: too long or not one valid JSON value", out)
		}
		if len(m) == 0 || len(m) > MaxMetrics {
			t.Fatalf("accepted %d metrics", len(m))
		}
		var generic map[string]any
		if err := json.Unmarshal(out, &generic); err != nil || len(generic) != len(m) {
			t.Fatalf("accepted %q, which is not an object of %d names: %v", out, len(m), err)
		}
		for k, v := range m {
			if k == "" || len(k) > MaxName || math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("accepted metric %q = %v", k, v)
			}
			if g, ok := generic[k].(float64); !ok || g != v {
				t.Fatalf("metric %q = %v, encoding/json reads %v", k, v, generic[k])
			}
		}
		again, _ := json.Marshal(m)
		m2, err := ParseMetrics(again)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip of %v: %v, %v", m, m2, err)
		}
	})
}
