package datasets

import (
	"strconv"
)

// Change kinds.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Change is one path that differs between two versions.
type Change struct {
	Kind    string `json:"kind"`
	Path    string `json:"path"`
	Type    string `json:"type"`
	OldSize int64  `json:"oldSize"`
	NewSize int64  `json:"newSize"`
}

// Changes is a list of changes that prints as a table.
type Changes []Change

// Rows implements output.Tabular.
func (cs Changes) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(cs))
	for _, c := range cs {
		rows = append(rows, ChangeRow(c))
	}
	return []string{"change", "path", "type", "old size", "new size"}, rows
}

// ChangeRow is the table row of one change.
func ChangeRow(c Change) []string {
	old, nw := strconv.FormatInt(c.OldSize, 10), strconv.FormatInt(c.NewSize, 10)
	if c.Kind == Added || c.Type != TypeFile {
		old = "-"
	}
	if c.Kind == Removed || c.Type != TypeFile {
		nw = "-"
	}
	return []string{c.Kind, c.Path, c.Type, old, nw}
}

// Diff lists what changed from a to b, sorted by path: paths only in b are
// added, only in a removed, and in both with a different type, content,
// mode or link target changed.
func Diff(a, b *Tree) Changes {
	out := Changes{}
	i, j := 0, 0
	for i < len(a.Entries) || j < len(b.Entries) {
		switch {
		case j >= len(b.Entries) || (i < len(a.Entries) && a.Entries[i].Path < b.Entries[j].Path):
			e := a.Entries[i]
			out = append(out, Change{Kind: Removed, Path: e.Path, Type: e.Type, OldSize: e.Size})
			i++
		case i >= len(a.Entries) || b.Entries[j].Path < a.Entries[i].Path:
			e := b.Entries[j]
			out = append(out, Change{Kind: Added, Path: e.Path, Type: e.Type, NewSize: e.Size})
			j++
		default:
			x, y := a.Entries[i], b.Entries[j]
			if x.Type != y.Type || x.Digest != y.Digest || x.Mode != y.Mode || x.Target != y.Target || x.Size != y.Size {
				out = append(out, Change{Kind: Changed, Path: y.Path, Type: y.Type, OldSize: x.Size, NewSize: y.Size})
			}
			i++
			j++
		}
	}
	return out
}

// Rows implements output.Tabular for a tree: one row per entry.
func (t *Tree) Rows() ([]string, [][]string) {
	rows := make([][]string, 0, len(t.Entries))
	for _, e := range t.Entries {
		rows = append(rows, EntryRow(e))
	}
	return []string{"type", "mode", "size", "digest", "path"}, rows
}

// EntryRow is the table row of one entry.
func EntryRow(e Entry) []string {
	size, digest := "-", "-"
	if e.Type == TypeFile {
		size = strconv.FormatInt(e.Size, 10)
		digest = e.Digest
		if len(digest) > 19 {
			digest = digest[:19]
		}
	}
	p := e.Path
	if e.Type == TypeSymlink {
		p += " -> " + e.Target
	}
	return []string{e.Type, strconv.FormatUint(uint64(e.Mode), 8), size, digest, p}
}
