// Package output prints objects the way every cairn verb does: as a table
// for people, or as JSON or YAML for programs (`-o table|json|yaml`).
package output

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// Formats accepted by Print.
const (
	Table = "table"
	JSON  = "json"
	YAML  = "yaml"
)

// Tabular is implemented by values that can print themselves as a table.
type Tabular interface {
	// Rows returns the header and the rows of the table.
	Rows() (header []string, rows [][]string)
}

// Print writes v to w in format. Table format needs v to be Tabular.
func Print(w io.Writer, format string, v any) error {
	switch strings.ToLower(format) {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		b, err := yaml.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(b)
		return err
	case Table, "":
		t, ok := v.(Tabular)
		if !ok {
			return Print(w, YAML, v)
		}
		header, rows := t.Rows()
		return WriteTable(w, header, rows)
	default:
		return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
	}
}

// WriteTable writes an aligned table with an upper-case header.
func WriteTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	up := make([]string, len(header))
	for i, h := range header {
		up[i] = strings.ToUpper(h)
	}
	fmt.Fprintln(tw, strings.Join(up, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = Escape(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// Escape makes a device- or artifact-supplied string safe for a terminal:
// control characters (C0, DEL, C1 and invalid UTF-8, tabs and newlines
// included, which would break a table) become Go escapes such as \x1b;
// everything else is kept.
func Escape(s string) string {
	if !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case unsafeRune(r):
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}
