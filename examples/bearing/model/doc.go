// Package model is the example bearing anomaly model: a tiny multilayer
// perceptron (features → tanh hidden layer → sigmoid score) trained by
// full-batch gradient descent with gorgonia.org/tensor, saved as raw float32
// weights plus a JSON config, and scored by the same code in evaluation and in
// the demo runtime.
package model
