// Package synth generates a deterministic synthetic dataset of vibration
// features of healthy and failing rolling-element bearings, the training data
// of the example anomaly model, and reads and writes it as CSV.
package synth
