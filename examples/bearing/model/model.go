package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	_ "go4.org/unsafe/assume-no-moving-gc" // gorgonia.org/tensor panics at start-up without it
	"gorgonia.org/tensor"

	"github.com/cairn-dev/cairn/internal/atomicfile"
)

// File names inside a model folder.
const (
	ConfigFile  = "config.json"
	WeightsFile = "weights.bin"
	MetricsFile = "metrics.json"
)

// ErrSelfTest is returned by SelfTest when the model does not reproduce the
// scores recorded at training time.
var ErrSelfTest = errors.New("model self-test failed")

// Config is config.json: everything needed to score besides the weights.
type Config struct {
	Name     string    `json:"name"`
	Version  string    `json:"version"`
	Features []string  `json:"features"`
	Mean     []float64 `json:"mean"` // per feature, for standardisation
	Std      []float64 `json:"std"`
	Arch     Arch      `json:"architecture"`
	// Weights is the weight file name and WeightsSHA256 its digest.
	Weights       string  `json:"weights"`
	WeightsSHA256 string  `json:"weightsSha256"`
	Threshold     float64 `json:"threshold"` // score at or above it is an anomaly
	// SelfTest holds inputs and the scores the trained model gave them.
	SelfTest SelfTestVector `json:"selfTest"`
	Training TrainingInfo   `json:"training"`
}

// Arch describes the network: Inputs → Hidden (tanh) → 1 (sigmoid). The
// weights are stored as float32 little-endian in the order W1 (Inputs×Hidden,
// row-major), b1 (Hidden), w2 (Hidden), b2 (1).
type Arch struct {
	Type   string `json:"type"` // "mlp"
	Inputs int    `json:"inputs"`
	Hidden int    `json:"hidden"`
}

// NumWeights is how many float32 values the weight file holds.
func (a Arch) NumWeights() int { return a.Inputs*a.Hidden + a.Hidden + a.Hidden + 1 }

// SelfTestVector is a health check carried by the model itself.
type SelfTestVector struct {
	Inputs    [][]float64 `json:"inputs"`
	Expected  []float64   `json:"expected"`
	Tolerance float64     `json:"tolerance"`
}

// TrainingInfo records how the model was trained.
type TrainingInfo struct {
	Rows         int     `json:"rows"`
	Epochs       int     `json:"epochs"`
	LearningRate float64 `json:"learningRate"`
	Seed         int64   `json:"seed"`
	FinalLoss    float64 `json:"finalLoss"`
}

// Model is a loaded or freshly trained model.
type Model struct {
	Config Config
	w1     []float64 // Inputs×Hidden
	b1     []float64
	w2     []float64
	b2     float64
}

// Score returns the anomaly score in [0, 1] of each row of raw (not
// standardised) features.
func (m *Model) Score(rows [][]float64) ([]float64, error) {
	d := m.Config.Arch.Inputs
	x := make([]float64, 0, len(rows)*d)
	for i, r := range rows {
		if len(r) != d {
			return nil, fmt.Errorf("row %d: %d features, want %d (%v)", i, len(r), d, m.Config.Features)
		}
		for j, v := range r {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("row %d: feature %s: not a finite number", i, m.Config.Features[j])
			}
			x = append(x, (v-m.Config.Mean[j])/m.Config.Std[j])
		}
	}
	if len(rows) == 0 {
		return []float64{}, nil
	}
	_, p, err := m.forward(tensor.New(tensor.WithShape(len(rows), d), tensor.WithBacking(x)))
	return p, err
}

// forward runs the network on standardised inputs x (n×Inputs) and returns
// the hidden activations (n×Hidden) and the scores.
func (m *Model) forward(x *tensor.Dense) (*tensor.Dense, []float64, error) {
	a := m.Config.Arch
	n := x.Shape()[0]
	w1 := tensor.New(tensor.WithShape(a.Inputs, a.Hidden), tensor.WithBacking(m.w1))
	z1, err := x.MatMul(w1)
	if err != nil {
		return nil, nil, fmt.Errorf("forward: hidden layer: %w", err)
	}
	h := z1.Float64s()
	for i := 0; i < n; i++ {
		for k := 0; k < a.Hidden; k++ {
			h[i*a.Hidden+k] = math.Tanh(h[i*a.Hidden+k] + m.b1[k])
		}
	}
	z2, err := z1.MatVecMul(tensor.New(tensor.WithShape(a.Hidden), tensor.WithBacking(m.w2)))
	if err != nil {
		return nil, nil, fmt.Errorf("forward: output layer: %w", err)
	}
	p := make([]float64, n)
	for i, z := range z2.Float64s() {
		p[i] = sigmoid(z + m.b2)
	}
	return z1, p, nil
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

// SelfTest scores the config's self-test inputs and compares them with the
// scores recorded at training time.
func (m *Model) SelfTest() error {
	st := m.Config.SelfTest
	if len(st.Inputs) == 0 || len(st.Inputs) != len(st.Expected) {
		return fmt.Errorf("%w: config has %d self-test inputs and %d expected scores", ErrSelfTest, len(st.Inputs), len(st.Expected))
	}
	got, err := m.Score(st.Inputs)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrSelfTest, err)
	}
	tol := st.Tolerance
	if tol == 0 {
		tol = 1e-6
	}
	for i := range got {
		if math.Abs(got[i]-st.Expected[i]) > tol {
			return fmt.Errorf("%w: input %d scores %.6f, expected %.6f", ErrSelfTest, i, got[i], st.Expected[i])
		}
	}
	return nil
}

// weights packs the parameters in file order.
func (m *Model) weights() []float64 {
	out := make([]float64, 0, m.Config.Arch.NumWeights())
	out = append(out, m.w1...)
	out = append(out, m.b1...)
	out = append(out, m.w2...)
	return append(out, m.b2)
}

func (m *Model) setWeights(w []float64) {
	a := m.Config.Arch
	n1 := a.Inputs * a.Hidden
	m.w1 = w[:n1:n1]
	m.b1 = w[n1 : n1+a.Hidden : n1+a.Hidden]
	m.w2 = w[n1+a.Hidden : n1+2*a.Hidden : n1+2*a.Hidden]
	m.b2 = w[n1+2*a.Hidden]
}

// roundToFloat32 makes the in-memory weights equal to what Save writes.
func (m *Model) roundToFloat32() {
	w := m.weights()
	for i, v := range w {
		w[i] = float64(float32(v))
	}
	m.setWeights(w)
}

func encodeWeights(w []float64) []byte {
	b := make([]byte, 4*len(w))
	for i, v := range w {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
	}
	return b
}

// Save writes config.json and the weight file into dir, each to a temporary
// name renamed into place.
func (m *Model) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	wb := encodeWeights(m.weights())
	sum := sha256.Sum256(wb)
	m.Config.Weights = WeightsFile
	m.Config.WeightsSHA256 = hex.EncodeToString(sum[:])
	if err := atomicfile.WriteFile(filepath.Join(dir, WeightsFile), wb, 0o644); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	cb, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return fmt.Errorf("save model: encode config: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ConfigFile), append(cb, '\n'), 0o644); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}

// FindDir returns dir if it holds config.json, or else the single folder
// below it that does (a pulled artifact may keep its top folder).
func FindDir(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return dir, nil
	}
	var found []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && d.Name() == ConfigFile && len(found) < 2 {
			found = append(found, filepath.Dir(p))
		}
		return nil
	})
	if len(found) != 1 {
		return "", fmt.Errorf("find model in %s: %d folders hold %s, want 1", dir, len(found), ConfigFile)
	}
	return found[0], nil
}

// Load reads a model folder (see FindDir), checking the weight file's size
// and digest against the config.
func Load(dir string) (*Model, error) {
	dir, err := FindDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	cb, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(cb))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("load model %s: decode %s: %w", dir, ConfigFile, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("load model %s: %s: %w", dir, ConfigFile, err)
	}
	wb, err := os.ReadFile(filepath.Join(dir, filepath.Base(c.Weights)))
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	if len(wb) != 4*c.Arch.NumWeights() {
		return nil, fmt.Errorf("load model %s: %s has %d bytes, want %d", dir, c.Weights, len(wb), 4*c.Arch.NumWeights())
	}
	if c.WeightsSHA256 != "" {
		sum := sha256.Sum256(wb)
		if got := hex.EncodeToString(sum[:]); got != c.WeightsSHA256 {
			return nil, fmt.Errorf("load model %s: %s digest %s, config says %s", dir, c.Weights, got, c.WeightsSHA256)
		}
	}
	w := make([]float64, c.Arch.NumWeights())
	for i := range w {
		f := math.Float32frombits(binary.LittleEndian.Uint32(wb[4*i:]))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			return nil, fmt.Errorf("load model %s: weight %d is not finite", dir, i)
		}
		w[i] = float64(f)
	}
	m := &Model{Config: c}
	m.setWeights(w)
	return m, nil
}

func (c Config) check() error {
	d := len(c.Features)
	switch {
	case c.Arch.Type != "mlp":
		return fmt.Errorf("architecture.type %q: want mlp", c.Arch.Type)
	case d == 0 || c.Arch.Inputs != d:
		return fmt.Errorf("architecture.inputs %d: want the number of features, %d", c.Arch.Inputs, d)
	case c.Arch.Hidden <= 0 || c.Arch.Hidden > 1024:
		return fmt.Errorf("architecture.hidden %d: want 1..1024", c.Arch.Hidden)
	case len(c.Mean) != d || len(c.Std) != d:
		return fmt.Errorf("mean and std need %d values each", d)
	case c.Weights == "":
		return fmt.Errorf("weights: missing file name")
	}
	for j, s := range c.Std {
		if !(s > 0) {
			return fmt.Errorf("std[%d] (%s) = %v: want > 0", j, c.Features[j], s)
		}
	}
	return nil
}
