package manifests

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a manifest repository, located by file and line.
// Its string is "file:LINE: Kind/name: field: message"; the parts that are
// not known (a document without kind, a file-level problem) are left out.
type Error struct {
	File    string // slash path relative to the repository root
	Line    int    // line of the offending field, or of the document or key where a field is missing
	Kind    string // kind of the object, when known
	Name    string // metadata.name of the object, when known
	Field   string // dotted path of the field, e.g. spec.waves[1].percent
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteString(": ")
	switch {
	case e.Kind != "" && e.Name != "":
		b.WriteString(e.Kind + "/" + e.Name + ": ")
	case e.Kind != "":
		b.WriteString(e.Kind + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrorList is every problem found in a repository, sorted by file, line,
// field and message. Load returns it as its error when there is any.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors so errors.As finds a single *Error.
func (l ErrorList) Unwrap() []error {
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errs
}

// Sort orders the list by file, line, field and message.
func (l ErrorList) Sort() {
	slices.SortStableFunc(l, func(a, b *Error) int {
		return cmp.Or(
			strings.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			strings.Compare(a.Field, b.Field),
			strings.Compare(a.Message, b.Message),
		)
	})
}

// err returns the list as an error, nil when empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return l
}
