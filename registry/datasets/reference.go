package datasets

import "github.com/cairn-dev/cairn/registry/datasets/drift"

// Reference is the histogram as the drift package compares it.
func (h Histogram) Reference() drift.Reference {
	return drift.EqualWidth(h.Min, h.Max, h.Counts)
}

// References are the drift references of every numeric column of p, by
// column name; a name repeated in several files keeps its first file's.
func (p *Profile) References() map[string]drift.Reference {
	out := map[string]drift.Reference{}
	for _, f := range p.Files {
		for _, c := range f.Columns {
			if _, dup := out[c.Name]; dup || len(c.Histogram.Counts) == 0 {
				continue
			}
			out[c.Name] = c.Histogram.Reference()
		}
	}
	return out
}

// CategoryCounts are the value counts of every categorical column of p, by
// column name; a name repeated in several files keeps its first file's.
func (p *Profile) CategoryCounts() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	for _, f := range p.Files {
		for _, c := range f.Columns {
			if _, dup := out[c.Name]; dup || len(c.Categories) == 0 {
				continue
			}
			out[c.Name] = c.Categories
		}
	}
	return out
}
