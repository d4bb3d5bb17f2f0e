package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gorgonia.org/tensor"
)

// TrainOptions control Train. Zero values take the documented defaults.
type TrainOptions struct {
	Name     string   // "bearing-anomaly"
	Version  string   // "1.0.0"
	Features []string // column names, required
	Hidden   int      // hidden units, 8
	Epochs   int      // full-batch Adam steps, 400
	LR       float64  // Adam learning rate, 0.05
	L2       float64  // weight decay, 1e-4
	Seed     int64    // weight initialisation
	// SelfTestRows is how many training rows become the self-test vector, 8.
	SelfTestRows int
}

func (o *TrainOptions) defaults() {
	if o.Name == "" {
		o.Name = "bearing-anomaly"
	}
	if o.Version == "" {
		o.Version = "1.0.0"
	}
	if o.Hidden == 0 {
		o.Hidden = 8
	}
	if o.Epochs == 0 {
		o.Epochs = 400
	}
	if o.LR == 0 {
		o.LR = 0.05
	}
	if o.L2 == 0 {
		o.L2 = 1e-4
	}
	if o.SelfTestRows == 0 {
		o.SelfTestRows = 8
	}
}

// Train fits the network to rows (raw features) and labels (true: failing)
// by full-batch gradient descent on the binary cross-entropy, with the
// matrix products done by gorgonia.org/tensor. It is deterministic for given
// inputs and options. The returned model's weights are rounded to float32,
// exactly as Save stores them, and its threshold maximises F1 on the
// training rows.
func Train(rows [][]float64, labels []bool, o TrainOptions) (*Model, error) {
	o.defaults()
	n, d, hN := len(rows), len(o.Features), o.Hidden
	if n == 0 || len(labels) != n {
		return nil, fmt.Errorf("train: %d rows and %d labels", n, len(labels))
	}
	// Standardisation from the training rows.
	mean, std := make([]float64, d), make([]float64, d)
	for _, r := range rows {
		if len(r) != d {
			return nil, fmt.Errorf("train: row has %d features, want %d", len(r), d)
		}
		for j, v := range r {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for _, r := range rows {
		for j, v := range r {
			std[j] += (v - mean[j]) * (v - mean[j])
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / float64(n))
		if std[j] < 1e-9 {
			std[j] = 1
		}
	}
	xb, xtb := make([]float64, n*d), make([]float64, d*n)
	y := make([]float64, n)
	for i, r := range rows {
		for j, v := range r {
			z := (v - mean[j]) / std[j]
			xb[i*d+j], xtb[j*n+i] = z, z
		}
		if labels[i] {
			y[i] = 1
		}
	}
	x := tensor.New(tensor.WithShape(n, d), tensor.WithBacking(xb))
	xt := tensor.New(tensor.WithShape(d, n), tensor.WithBacking(xtb))

	m := &Model{Config: Config{
		Name: o.Name, Version: o.Version, Features: append([]string(nil), o.Features...),
		Mean: mean, Std: std, Arch: Arch{Type: "mlp", Inputs: d, Hidden: hN},
		Weights:  WeightsFile,
		Training: TrainingInfo{Rows: n, Epochs: o.Epochs, LearningRate: o.LR, Seed: o.Seed},
	}}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x6d6c70)) // "mlp"
	w := make([]float64, m.Config.Arch.NumWeights())
	scale1, scale2 := math.Sqrt(1/float64(d)), math.Sqrt(1/float64(hN))
	for i := 0; i < d*hN; i++ {
		w[i] = rng.NormFloat64() * scale1
	}
	for i := d*hN + hN; i < d*hN+2*hN; i++ {
		w[i] = rng.NormFloat64() * scale2
	}
	m.setWeights(w)

	adam := newAdam(len(w), o.LR)
	grad := make([]float64, len(w))
	var loss float64
	for epoch := 0; epoch < o.Epochs; epoch++ {
		hid, p, err := m.forward(x)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: %w", epoch, err)
		}
		loss = 0
		dz2 := make([]float64, n)
		for i := range p {
			pc := math.Min(math.Max(p[i], 1e-12), 1-1e-12)
			loss -= y[i]*math.Log(pc) + (1-y[i])*math.Log(1-pc)
			dz2[i] = (p[i] - y[i]) / float64(n)
		}
		loss /= float64(n)
		// Output layer: gw2 = dz2ᵀ·H, gb2 = Σ dz2.
		dz2row := tensor.New(tensor.WithShape(1, n), tensor.WithBacking(dz2))
		gw2, err := dz2row.MatMul(hid)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: output gradient: %w", epoch, err)
		}
		// Hidden layer: dH = (dz2 ⊗ w2) ⊙ (1 − H²), gW1 = Xᵀ·dH, gb1 = Σ_rows dH.
		dz2col := tensor.New(tensor.WithShape(n, 1), tensor.WithBacking(dz2))
		w2row := tensor.New(tensor.WithShape(1, hN), tensor.WithBacking(append([]float64(nil), m.w2...)))
		dh, err := dz2col.MatMul(w2row)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: hidden gradient: %w", epoch, err)
		}
		hv, dhv := hid.Float64s(), dh.Float64s()
		for i := range dhv {
			dhv[i] *= 1 - hv[i]*hv[i]
		}
		gw1, err := xt.MatMul(dh)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: input gradient: %w", epoch, err)
		}
		ones := make([]float64, n)
		for i := range ones {
			ones[i] = 1
		}
		gb1, err := tensor.New(tensor.WithShape(1, n), tensor.WithBacking(ones)).MatMul(dh)
		if err != nil {
			return nil, fmt.Errorf("train: epoch %d: bias gradient: %w", epoch, err)
		}
		k := copy(grad, gw1.Float64s())
		k += copy(grad[k:], gb1.Float64s())
		k += copy(grad[k:], gw2.Float64s())
		grad[k] = 0
		for _, g := range dz2 {
			grad[k] += g
		}
		cur := m.weights()
		for i := 0; i < d*hN; i++ {
			grad[i] += o.L2 * cur[i]
		}
		adam.step(cur, grad)
		m.setWeights(cur)
	}
	m.Config.Training.FinalLoss = loss
	m.roundToFloat32()

	scores, err := m.Score(rows)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	m.Config.Threshold = bestF1Threshold(scores, labels)
	// Self-test: the first rows of each class and the scores they get now.
	st := SelfTestVector{Tolerance: 1e-6}
	for _, want := range []bool{false, true} {
		for i, k := 0, 0; i < n && k < o.SelfTestRows/2; i++ {
			if labels[i] == want {
				st.Inputs = append(st.Inputs, append([]float64(nil), rows[i]...))
				k++
			}
		}
	}
	if st.Expected, err = m.Score(st.Inputs); err != nil {
		return nil, fmt.Errorf("train: self-test vector: %w", err)
	}
	m.Config.SelfTest = st
	return m, nil
}

// Corrupt simulates a broken export, as a faulty quantisation step would
// produce: it zeroes the hidden layer's input weights but keeps the config's
// self-test, so the model loads yet fails SelfTest. The demo's v2-broken is
// made this way.
func (m *Model) Corrupt() {
	for i := range m.w1 {
		m.w1[i] = 0
	}
}

type adam struct {
	lr, b1, b2, eps float64
	t               int
	m, v            []float64
}

func newAdam(n int, lr float64) *adam {
	return &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, m: make([]float64, n), v: make([]float64, n)}
}

func (a *adam) step(w, g []float64) {
	a.t++
	c1 := 1 - math.Pow(a.b1, float64(a.t))
	c2 := 1 - math.Pow(a.b2, float64(a.t))
	for i := range w {
		a.m[i] = a.b1*a.m[i] + (1-a.b1)*g[i]
		a.v[i] = a.b2*a.v[i] + (1-a.b2)*g[i]*g[i]
		w[i] -= a.lr * (a.m[i] / c1) / (math.Sqrt(a.v[i]/c2) + a.eps)
	}
}
