package datasets

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/cairn-dev/cairn/registry/blobs"
)

// DefaultBins is the histogram bin count of a profile.
const DefaultBins = 20

// MaxCategories is the most distinct values a non-numeric column may have
// to be profiled as categorical (counts per value); beyond, it is left out.
const MaxCategories = 64

// profileBatch is the number of CSV rows reduced at once.
const profileBatch = 8192

// Histogram counts values in len(Counts) equal-width bins over [Min, Max];
// the last bin includes Max.
type Histogram struct {
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Counts []int64 `json:"counts"`
}

// Bin returns the bin of x, clamping values outside [Min, Max] to the first
// or last bin, so live values are counted the way the profile was.
func (h Histogram) Bin(x float64) int {
	n := len(h.Counts)
	if n == 0 {
		return 0
	}
	if h.Max <= h.Min || x <= h.Min || math.IsNaN(x) {
		return 0
	}
	i := int((x - h.Min) / (h.Max - h.Min) * float64(n))
	return min(max(i, 0), n-1)
}

// ColumnProfile summarises one CSV column: a numeric one by its moments
// and histogram (Variance is the population variance), a categorical one
// (not numeric, at most MaxCategories distinct values) by the count of each
// value. Empty cells are not counted.
type ColumnProfile struct {
	Name       string           `json:"name"`
	Count      int64            `json:"count"`
	Mean       float64          `json:"mean"`
	Variance   float64          `json:"variance"`
	Min        float64          `json:"min"`
	Max        float64          `json:"max"`
	Histogram  Histogram        `json:"histogram"`
	Categories map[string]int64 `json:"categories,omitempty"`
}

// FileProfile holds the numeric columns of one CSV file of a version.
type FileProfile struct {
	Path    string          `json:"path"`
	Rows    int64           `json:"rows"`
	Columns []ColumnProfile `json:"columns"`
}

// Profile is the statistical reference of a dataset version, stored next to
// its tree (trees/sha256/<2>/<64>.profile.json).
type Profile struct {
	Digest string        `json:"digest"`
	Files  []FileProfile `json:"files"`
}

// Rows implements output.Tabular: one row per column.
func (p *Profile) Rows() ([]string, [][]string) {
	var rows [][]string
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', 6, 64) }
	for _, fp := range p.Files {
		for _, c := range fp.Columns {
			rows = append(rows, []string{fp.Path, c.Name, strconv.FormatInt(c.Count, 10), f(c.Mean), f(c.Variance), f(c.Min), f(c.Max)})
		}
	}
	return []string{"file", "column", "count", "mean", "variance", "min", "max"}, rows
}

// ProfileKey is where the profile of tree digest lives.
func ProfileKey(digest string) string { return blobs.TreeKey(digest) + ".profile.json" }

// ProfileTree profiles every *.csv file of t, reading the local copies
// (locals[i] is the file of t.Entries[i]).
func ProfileTree(ctx context.Context, t *Tree, locals []string, bins int) (*Profile, error) {
	if bins <= 0 {
		bins = DefaultBins
	}
	p := &Profile{Files: []FileProfile{}}
	for i, e := range t.Entries {
		if e.Type != TypeFile || !strings.HasSuffix(strings.ToLower(e.Path), ".csv") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fp, err := ProfileCSV(locals[i], bins)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", e.Path, err)
		}
		fp.Path = e.Path
		p.Files = append(p.Files, *fp)
	}
	return p, nil
}

// colAcc accumulates one column over batches (Chan et al. pairwise update).
type colAcc struct {
	numeric bool
	n       int64
	mean    float64
	m2      float64
	min     float64
	max     float64
	batch   []float64
	hist    []int64
	// cats counts each value while there are at most MaxCategories (nil
	// after: too many to be categorical).
	cats map[string]int64
}

// ProfileCSV streams the CSV file at path twice (moments, then histograms),
// reducing batches of rows; memory is bounded by
// the batch size whatever the file's size. The first row names the columns;
// a column is numeric when every non-empty cell parses as a float.
func ProfileCSV(path string, bins int) (*FileProfile, error) {
	if bins <= 0 {
		bins = DefaultBins
	}
	var header []string
	var accs []*colAcc
	var rows int64
	// Pass 1: count, mean, variance, min, max.
	err := eachBatch(path, func(h []string) {
		header = append([]string(nil), h...)
		accs = make([]*colAcc, len(h))
		for i := range accs {
			accs[i] = &colAcc{numeric: true, min: math.Inf(1), max: math.Inf(-1), cats: map[string]int64{}}
		}
	}, func(rec []string) {
		rows++
		for i, cell := range rec {
			if i >= len(accs) {
				continue
			}
			cell = strings.TrimSpace(cell)
			if cell == "" {
				continue
			}
			if c := accs[i].cats; c != nil {
				if _, seen := c[cell]; seen || len(c) < MaxCategories {
					c[cell]++
				} else {
					accs[i].cats = nil
				}
			}
			if !accs[i].numeric {
				continue
			}
			x, err := strconv.ParseFloat(cell, 64)
			if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
				accs[i].numeric = false
				accs[i].batch = nil
				continue
			}
			accs[i].batch = append(accs[i].batch, x)
		}
	}, func() error {
		for _, a := range accs {
			if err := a.reduceMoments(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Pass 2: histograms over [min, max].
	for _, a := range accs {
		if a.numeric && a.n > 0 {
			a.hist = make([]int64, bins)
		}
	}
	err = eachBatch(path, func([]string) {}, func(rec []string) {
		for i, cell := range rec {
			if i >= len(accs) || accs[i].hist == nil {
				continue
			}
			if cell = strings.TrimSpace(cell); cell != "" {
				x, _ := strconv.ParseFloat(cell, 64)
				accs[i].batch = append(accs[i].batch, x)
			}
		}
	}, func() error {
		for _, a := range accs {
			if err := a.reduceHistogram(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fp := &FileProfile{Rows: rows, Columns: []ColumnProfile{}}
	for i, a := range accs {
		if !a.numeric && len(a.cats) > 0 {
			var n int64
			for _, c := range a.cats {
				n += c
			}
			fp.Columns = append(fp.Columns, ColumnProfile{Name: header[i], Count: n, Categories: a.cats})
			continue
		}
		if !a.numeric || a.n == 0 {
			continue
		}
		fp.Columns = append(fp.Columns, ColumnProfile{
			Name: header[i], Count: a.n, Mean: a.mean, Variance: a.m2 / float64(a.n),
			Min: a.min, Max: a.max,
			Histogram: Histogram{Min: a.min, Max: a.max, Counts: a.hist},
		})
	}
	return fp, nil
}

// eachBatch reads the CSV at path, calls header with the first record, row
// with every later one, and flush after every profileBatch rows and at the end.
func eachBatch(path string, header func([]string), row func([]string), flush func() error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	rec, err := r.Read()
	if err == io.EOF {
		return errors.New("empty CSV file")
	}
	if err != nil {
		return err
	}
	header(rec)
	n := 0
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		row(rec)
		if n++; n == profileBatch {
			if err := flush(); err != nil {
				return err
			}
			n = 0
		}
	}
	return flush()
}

// reduceMoments folds the pending batch into the running moments.
func (a *colAcc) reduceMoments() error {
	if !a.numeric || len(a.batch) == 0 {
		a.batch = a.batch[:0]
		return nil
	}
	sum, mx, mn := 0.0, math.Inf(-1), math.Inf(1)
	for _, x := range a.batch {
		sum += x
		mx = math.Max(mx, x)
		mn = math.Min(mn, x)
	}
	nb := float64(len(a.batch))
	mb := sum / nb
	var m2b float64
	for _, x := range a.batch {
		d := x - mb
		m2b += float64(d * d) // the conversion keeps d*d a product of its own (no fused multiply-add)
	}
	na := float64(a.n)
	delta := mb - a.mean
	tot := na + nb
	a.mean += delta * nb / tot
	a.m2 += m2b + delta*delta*na*nb/tot
	a.n += int64(len(a.batch))
	a.min = math.Min(a.min, mn)
	a.max = math.Max(a.max, mx)
	a.batch = a.batch[:0]
	return nil
}

// reduceHistogram bins the pending batch: bin (x-min)*bins/(max-min).
func (a *colAcc) reduceHistogram() error {
	if a.hist == nil || len(a.batch) == 0 {
		a.batch = a.batch[:0]
		return nil
	}
	h := Histogram{Min: a.min, Max: a.max, Counts: a.hist}
	if a.max > a.min {
		k := float64(len(a.hist)) / (a.max - a.min)
		for _, x := range a.batch {
			a.hist[min(max(int(float64(x-a.min)*k), 0), len(a.hist)-1)]++
		}
	} else {
		for _, x := range a.batch {
			a.hist[h.Bin(x)]++
		}
	}
	a.batch = a.batch[:0]
	return nil
}

// PSI is the population stability index of live counts against a
// reference histogram (same bins): Σ (l−r)·ln(l/r) over bin proportions,
// with empty bins smoothed to 1e-4. Below 0.1 is usually read as stable,
// above 0.25 as a significant shift.
func PSI(ref Histogram, live []int64) float64 {
	const eps = 1e-4
	var rt, lt float64
	for _, c := range ref.Counts {
		rt += float64(c)
	}
	for _, c := range live {
		lt += float64(c)
	}
	if rt == 0 || lt == 0 || len(live) != len(ref.Counts) {
		return math.NaN()
	}
	var psi float64
	for i, c := range ref.Counts {
		r := math.Max(float64(c)/rt, eps)
		l := math.Max(float64(live[i])/lt, eps)
		psi += (l - r) * math.Log(l/r)
	}
	return psi
}

func writeProfile(ctx context.Context, store blobs.Store, digest string, p *Profile) error {
	p.Digest = digest
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode profile: %w", err)
	}
	if _, err := store.Put(ctx, ProfileKey(digest), bytes.NewReader(b), int64(len(b)), blobs.Digest(b)); err != nil {
		return fmt.Errorf("store profile of %s: %w", digest, err)
	}
	return nil
}

// ReadProfile fetches the profile stored with version digest.
func ReadProfile(ctx context.Context, store blobs.Store, digest string) (*Profile, error) {
	if _, err := blobs.ParseDigest(digest); err != nil {
		return nil, err
	}
	rc, err := store.Get(ctx, ProfileKey(digest), 0, -1)
	if err != nil {
		if errors.Is(err, blobs.ErrNotFound) {
			return nil, fmt.Errorf("no profile for %s (push with --profile): %w", digest, err)
		}
		return nil, fmt.Errorf("read profile of %s: %w", digest, err)
	}
	defer rc.Close()
	var p Profile
	dec := json.NewDecoder(io.LimitReader(rc, 256<<20))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decode profile of %s: %w", digest, err)
	}
	if p.Digest != digest {
		return nil, fmt.Errorf("profile of %s names %s", digest, p.Digest)
	}
	return &p, nil
}
