package synth

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// Features are the columns a Row carries, in order.
var Features = []string{
	"rms",           // RMS acceleration, g
	"kurtosis",      // of the raw signal; 3 for a Gaussian
	"crest_factor",  // peak / rms
	"band_low",      // energy 0–1 kHz, g²
	"band_mid",      // energy 1–5 kHz, g²
	"band_high",     // energy 5–20 kHz, g² (early fault impacts)
	"peak_freq_hz",  // frequency of the largest spectral peak
	"temperature_c", // housing temperature
}

// LabelColumn is the name of the CSV column holding 1 for a failing bearing.
const LabelColumn = "failing"

// Row is one observation window of one bearing.
type Row struct {
	Bearing string
	X       []float64 // len(Features)
	Failing bool
}

// Options of Generate.
type Options struct {
	Seed int64
	// Rows is how many observations to generate.
	Rows int
	// FailRate is the fraction of failing bearings; 0.2 when zero.
	FailRate float64
}

// Generate returns Rows observations drawn from a seeded generator: the same
// options give the same rows on every run.
func Generate(o Options) []Row {
	if o.FailRate == 0 {
		o.FailRate = 0.2
	}
	r := rand.New(rand.NewPCG(uint64(o.Seed), 0x62656172696e67)) // "bearing"
	rows := make([]Row, o.Rows)
	for i := range rows {
		failing := r.Float64() < o.FailRate
		sev := 0.0 // fault severity in [0, 1]
		if failing {
			// Most faults are early and subtle; some are advanced.
			sev = math.Pow(r.Float64(), 1.6)*0.9 + 0.1
		}
		load := 0.7 + 0.6*r.Float64()     // operating load factor
		ambient := 22 + 8*r.NormFloat64() // ambient temperature
		shaft := 25 + 10*r.Float64()      // shaft speed, Hz
		rms := load*(0.45+0.9*sev) + 0.12*r.NormFloat64()
		kurt := 3 + 7*math.Pow(sev, 1.3) + math.Abs(0.9*r.NormFloat64())
		crest := 3.1 + 2.8*sev + 0.45*r.NormFloat64()
		low := load*load*(0.8+0.3*sev) + 0.15*r.NormFloat64()
		mid := 0.25 + 0.9*sev + 0.18*r.NormFloat64()
		high := 0.05 + 0.6*sev*sev + 0.08*math.Abs(r.NormFloat64())
		peak := shaft
		if failing && r.Float64() < 0.6+0.4*sev {
			// The outer-race defect frequency (about 3.6x shaft speed) dominates.
			peak = 3.58 * shaft
		}
		peak += 2 * r.NormFloat64()
		temp := ambient + 18*load + 14*sev + 3*r.NormFloat64()
		rows[i] = Row{
			Bearing: fmt.Sprintf("B%05d", i),
			X:       []float64{pos(rms), kurt, pos(crest), pos(low), pos(mid), pos(high), pos(peak), temp},
			Failing: failing,
		}
	}
	return rows
}

func pos(v float64) float64 { return math.Max(v, 0.001) }

// Split returns the first n-holdout rows and the last holdout rows.
func Split(rows []Row, holdout int) (train, hold []Row) {
	if holdout > len(rows) {
		holdout = len(rows)
	}
	return rows[:len(rows)-holdout], rows[len(rows)-holdout:]
}

// WriteCSV writes rows with a header: bearing, the features, failing.
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	header := append(append([]string{"bearing"}, Features...), LabelColumn)
	if err := cw.Write(header); err != nil {
		return fmt.Errorf("write csv header: %w", err)
	}
	rec := make([]string, len(header))
	for _, r := range rows {
		rec[0] = r.Bearing
		for j, v := range r.X {
			rec[1+j] = strconv.FormatFloat(v, 'f', 5, 64)
		}
		rec[len(rec)-1] = "0"
		if r.Failing {
			rec[len(rec)-1] = "1"
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv row %s: %w", r.Bearing, err)
		}
	}
	cw.Flush()
	return cw.Error()
}

// ReadCSV reads rows written by WriteCSV. Columns are found by header name,
// so extra columns are ignored.
func ReadCSV(rd io.Reader) ([]Row, error) {
	cr := csv.NewReader(rd)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("read csv header: %w", err)
	}
	idx := map[string]int{}
	for i, h := range header {
		idx[h] = i
	}
	cols := make([]int, len(Features))
	for j, f := range Features {
		i, ok := idx[f]
		if !ok {
			return nil, fmt.Errorf("csv header: missing column %q", f)
		}
		cols[j] = i
	}
	li, ok := idx[LabelColumn]
	if !ok {
		return nil, fmt.Errorf("csv header: missing column %q", LabelColumn)
	}
	bi, hasID := idx["bearing"]
	var rows []Row
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read csv: %w", err)
		}
		r := Row{X: make([]float64, len(Features))}
		if hasID {
			r.Bearing = rec[bi]
		}
		for j, i := range cols {
			v, err := strconv.ParseFloat(rec[i], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("csv line %d: column %s: bad number %q", line, Features[j], rec[i])
			}
			r.X[j] = v
		}
		switch rec[li] {
		case "0":
		case "1":
			r.Failing = true
		default:
			return nil, fmt.Errorf("csv line %d: column %s: want 0 or 1, got %q", line, LabelColumn, rec[li])
		}
		rows = append(rows, r)
	}
}

// WriteFile writes rows as CSV to path, creating its folder.
func WriteFile(path string, rows []Row) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := WriteCSV(f, rows); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// ReadFile reads a CSV file written by WriteFile.
func ReadFile(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	rows, err := ReadCSV(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return rows, nil
}
