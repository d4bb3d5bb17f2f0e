package datasets_test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cairn-dev/cairn/registry/datasets"
)

func TestProfileCSV(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("id,temp,label,sparse\n")
	// 20000 rows: more than one batch.
	n := 20000
	var sum, sumsq float64
	for i := range n {
		x := float64(i%100) / 10 // 0 .. 9.9
		sum += x
		sumsq += x * x
		sparse := ""
		if i%2 == 0 {
			sparse = "1"
		}
		fmt.Fprintf(&b, "%d,%g,cat%d,%s\n", i, x, i%3, sparse)
	}
	write(t, dir, "d/m.csv", []byte(b.String()), 0o644)
	write(t, dir, "d/readme.txt", []byte("not csv"), 0o644)

	ctx := context.Background()
	store := folderStore(t)
	res, err := datasets.Push(ctx, store, dir, datasets.PushOptions{Profile: true})
	if err != nil {
		t.Fatal(err)
	}
	p, err := datasets.ReadProfile(ctx, store, res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Files) != 1 || p.Files[0].Path != "d/m.csv" || p.Files[0].Rows != int64(n) {
		t.Fatalf("profile files %+v", p.Files)
	}
	cols := map[string]datasets.ColumnProfile{}
	for _, c := range p.Files[0].Columns {
		cols[c.Name] = c
	}
	// A text column with few values is categorical: its value counts.
	if l := cols["label"]; l.Count != int64(n) || len(l.Histogram.Counts) != 0 ||
		l.Categories["cat0"] != 6667 || l.Categories["cat1"] != 6667 || l.Categories["cat2"] != 6666 || len(l.Categories) != 3 {
		t.Errorf("label: %+v, want categories cat0..cat2 counted", l)
	}
	temp := cols["temp"]
	mean := sum / float64(n)
	variance := sumsq/float64(n) - mean*mean
	if temp.Count != int64(n) || math.Abs(temp.Mean-mean) > 1e-9 || math.Abs(temp.Variance-variance) > 1e-6 || temp.Min != 0 || temp.Max != 9.9 {
		t.Fatalf("temp: %+v, want mean %g variance %g", temp, mean, variance)
	}
	var total int64
	for _, c := range temp.Histogram.Counts {
		total += c
		if c != int64(n/20) {
			t.Errorf("bin count %d, want %d (uniform)", c, n/20)
		}
	}
	if total != int64(n) || len(temp.Histogram.Counts) != datasets.DefaultBins {
		t.Fatalf("histogram %+v", temp.Histogram)
	}
	if s := cols["sparse"]; s.Count != int64(n/2) || s.Mean != 1 || s.Variance != 0 {
		t.Fatalf("sparse %+v", s)
	}
	// Drift: the reference against itself is 0, a shifted sample is not.
	if psi := datasets.PSI(temp.Histogram, temp.Histogram.Counts); psi != 0 {
		t.Errorf("PSI of itself = %g", psi)
	}
	live := make([]int64, datasets.DefaultBins)
	for i := range 1000 {
		live[temp.Histogram.Bin(5+float64(i%50)/10)]++ // only the upper half
	}
	if psi := datasets.PSI(temp.Histogram, live); psi < 0.25 {
		t.Errorf("PSI of a shifted sample = %g, want > 0.25", psi)
	}
	if _, err := datasets.ReadProfile(ctx, store, "sha256:"+strings.Repeat("0", 64)); err == nil {
		t.Error("profile of an unknown digest")
	}
}

func TestPSI(t *testing.T) {
	ref := datasets.Histogram{Min: 0, Max: 1, Counts: []int64{25, 25, 25, 25}}
	tests := []struct {
		name    string
		live    []int64
		lo, hi  float64
		wantNaN bool
	}{
		{"same", []int64{25, 25, 25, 25}, 0, 0, false},
		{"scaled", []int64{1, 1, 1, 1}, 0, 0, false},
		{"slight", []int64{27, 24, 25, 24}, 0, 0.01, false},
		{"shifted", []int64{0, 0, 50, 50}, 1, 100, false},
		{"wrong bins", []int64{1, 2}, 0, 0, true},
		{"empty", []int64{0, 0, 0, 0}, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := datasets.PSI(ref, tc.live)
			if tc.wantNaN {
				if !math.IsNaN(got) {
					t.Fatalf("want NaN, got %g", got)
				}
				return
			}
			if got < tc.lo-1e-12 || got > tc.hi+1e-12 {
				t.Fatalf("PSI = %g, want in [%g, %g]", got, tc.lo, tc.hi)
			}
		})
	}
}

// A text column with more than MaxCategories values is left out.
func TestProfileManyCategories(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("name,kind\n")
	for i := range datasets.MaxCategories + 1 {
		fmt.Fprintf(&b, "n%d,k%d\n", i, i%2)
	}
	write(t, dir, "m.csv", []byte(b.String()), 0o644)
	fp, err := datasets.ProfileCSV(dir+"/m.csv", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp.Columns) != 1 || fp.Columns[0].Name != "kind" || len(fp.Columns[0].Categories) != 2 {
		t.Fatalf("columns %+v, want only kind (2 categories)", fp.Columns)
	}
}
