package plan

import (
	"slices"
	"strings"

	"github.com/cairn-dev/cairn/manifests"
)

// ReleaseChange is how one release differs between two snapshots.
type ReleaseChange struct {
	Release string `json:"release"`
	Change  string `json:"change"` // Added, Changed, Removed or Unchanged
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
}

// Diff compares the releases of base and head by the model digest they pin:
// added, removed, changed (from → to) or unchanged, sorted by release name.
// A nil base has no releases.
func Diff(base, head *manifests.Snapshot) []ReleaseChange {
	var out []ReleaseChange
	seen := map[string]bool{}
	for _, r := range head.Releases() {
		n := r.Metadata.Name
		seen[n] = true
		c := ReleaseChange{Release: n, Change: Added, To: modelDigest(head, r.Spec.Model)}
		if base != nil {
			if b, ok := base.Release(n); ok {
				c.From = modelDigest(base, b.Spec.Model)
				c.Change = Changed
				if c.From == c.To {
					c.Change = Unchanged
				}
			}
		}
		out = append(out, c)
	}
	if base != nil {
		for _, b := range base.Releases() {
			if !seen[b.Metadata.Name] {
				out = append(out, ReleaseChange{Release: b.Metadata.Name, Change: Removed, From: modelDigest(base, b.Spec.Model)})
			}
		}
	}
	slices.SortFunc(out, func(a, b ReleaseChange) int { return strings.Compare(a.Release, b.Release) })
	return out
}
