// Package evaluations keeps the scheduled evaluations of releases in the
// state database: the runs asked of evaluator agents, the metrics they
// reported per model, and each run's verdict of candidate against champion.
package evaluations
