package model_test

import (
	"fmt"

	"github.com/cairn-dev/cairn/examples/bearing/model"
	"github.com/cairn-dev/cairn/examples/bearing/synth"
)

func Example() {
	rows := synth.Generate(synth.Options{Seed: 1, Rows: 1000})
	x, y := make([][]float64, len(rows)), make([]bool, len(rows))
	for i, r := range rows {
		x[i], y[i] = r.X, r.Failing
	}
	m, err := model.Train(x, y, model.TrainOptions{Features: synth.Features, Epochs: 200})
	if err != nil {
		panic(err)
	}
	hold := synth.Generate(synth.Options{Seed: 2, Rows: 500})
	hx, hy := make([][]float64, len(hold)), make([]bool, len(hold))
	for i, r := range hold {
		hx[i], hy[i] = r.X, r.Failing
	}
	mt, _ := model.Evaluate(m, hx, hy)
	fmt.Println("AUC above 0.95:", mt.AUC > 0.95)
	fmt.Println("self-test:", m.SelfTest())
	// Output:
	// AUC above 0.95: true
	// self-test: <nil>
}

func ExampleAUC() {
	scores := []float64{0.1, 0.4, 0.35, 0.8}
	failing := []bool{false, false, true, true}
	fmt.Println(model.AUC(scores, failing))
	// Output: 0.75
}
