// Package evaluation compares a candidate model's metrics on a holdout
// with the champion's under a release's thresholds, and parses the metrics
// an evaluate command prints. It is pure: the server, the agent and the
// policies share it.
package evaluation
