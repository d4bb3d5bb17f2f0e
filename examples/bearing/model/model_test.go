package model_test

import (
	"errors"
	"math"
	"testing"

	"github.com/cairn-dev/cairn/examples/bearing/model"
	"github.com/cairn-dev/cairn/examples/bearing/synth"
)

func split(rows []synth.Row) ([][]float64, []bool) {
	x, y := make([][]float64, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		x[i], y[i] = r.X, r.Failing
	}
	return x, y
}

func trainSmall(t *testing.T, rows int, opts model.TrainOptions) *model.Model {
	t.Helper()
	x, y := split(synth.Generate(synth.Options{Seed: 1, Rows: rows}))
	opts.Features = synth.Features
	m, err := model.Train(x, y, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTrainReachesAUCOnHoldout(t *testing.T) {
	hx, hy := split(synth.Generate(synth.Options{Seed: 1_000_004, Rows: 1000}))
	for _, tc := range []struct {
		name string
		rows int
	}{{"v1", 2000}, {"v2", 8000}} {
		t.Run(tc.name, func(t *testing.T) {
			m := trainSmall(t, tc.rows, model.TrainOptions{})
			mt, err := model.Evaluate(m, hx, hy)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: AUC %.4f F1 %.4f", tc.name, mt.AUC, mt.F1)
			if mt.AUC < 0.9 {
				t.Errorf("AUC %.4f on the holdout, want ≥ 0.9", mt.AUC)
			}
			if mt.F1 < 0.8 {
				t.Errorf("F1 %.4f on the holdout, want ≥ 0.8", mt.F1)
			}
		})
	}
}

func TestTrainIsDeterministicAndSaveLoadScoresAlike(t *testing.T) {
	a := trainSmall(t, 500, model.TrainOptions{Epochs: 100, Seed: 7})
	b := trainSmall(t, 500, model.TrainOptions{Epochs: 100, Seed: 7})
	rows := a.Config.SelfTest.Inputs
	sa, _ := a.Score(rows)
	sb, _ := b.Score(rows)
	for i := range sa {
		if sa[i] != sb[i] {
			t.Fatalf("row %d: two trainings score %v and %v", i, sa[i], sb[i])
		}
	}
	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	l, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := l.Score(rows)
	for i := range sa {
		if sa[i] != sl[i] {
			t.Fatalf("row %d: trained model scores %v, loaded %v", i, sa[i], sl[i])
		}
	}
	if err := l.SelfTest(); err != nil {
		t.Fatal(err)
	}
}

func TestCorruptModelFailsSelfTest(t *testing.T) {
	m := trainSmall(t, 300, model.TrainOptions{Epochs: 50})
	m.Corrupt()
	dir := t.TempDir()
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	l, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SelfTest(); !errors.Is(err, model.ErrSelfTest) {
		t.Fatalf("SelfTest of a corrupted model = %v, want ErrSelfTest", err)
	}
}

func TestScoreRejectsBadRows(t *testing.T) {
	m := trainSmall(t, 200, model.TrainOptions{Epochs: 10})
	for name, row := range map[string][]float64{
		"short": {1, 2},
		"nan":   {1, 2, 3, 4, 5, 6, 7, math.NaN()},
	} {
		if _, err := m.Score([][]float64{row}); err == nil {
			t.Errorf("%s: Score accepted %v", name, row)
		}
	}
}

func TestAUC(t *testing.T) {
	for _, tc := range []struct {
		name   string
		scores []float64
		labels []bool
		want   float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		{"inverted", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0},
		{"ties", []float64{0.5, 0.5, 0.5, 0.5}, []bool{false, true, false, true}, 0.5},
		{"one class", []float64{0.1, 0.2}, []bool{true, true}, 0.5},
		{"mixed", []float64{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}, 0.75},
	} {
		if got := model.AUC(tc.scores, tc.labels); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: AUC = %v, want %v", tc.name, got, tc.want)
		}
	}
}
