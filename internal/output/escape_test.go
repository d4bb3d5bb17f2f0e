package output

import (
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"jetson-orin":         "jetson-orin",
		"\x1b[2Jgone":         `\x1b[2Jgone`,
		"a\tb\nc":             `a\tb\nc`,
		"bell\a del\x7f":      `bell\a del\x7f`,
		"c1 \u009b31m":        `c1 \u009b31m`,
		"bad \xff utf8":       `bad \xff utf8`,
		"ünïcode ✓":           "ünïcode ✓",
		"real \uFFFD is kept": "real \uFFFD is kept",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteTableEscapesCells(t *testing.T) {
	var b strings.Builder
	if err := WriteTable(&b, []string{"name", "os"}, [][]string{{"dev-1", "linux\x1b[2J\x1b]0;pwned\a"}}); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\x1b\a") {
		t.Fatalf("raw control characters in table:\n%q", b.String())
	}
	if !strings.Contains(b.String(), `linux\x1b[2J\x1b]0;pwned\a`) {
		t.Fatalf("table:\n%s", b.String())
	}
}
