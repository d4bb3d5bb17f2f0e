// Package drift compares live input histograms with a dataset's training
// profile: it rebins live counts onto the profile's bins and computes the
// population stability index, the Jensen–Shannon distance and a binned
// Kolmogorov–Smirnov statistic. It is pure and imports only the standard
// library, so the rollout engine, the server and agents can all use it.
package drift
